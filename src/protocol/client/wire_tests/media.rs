//! Wire tests of the one-shot upload, alt text and subtitles in both versions: method, path,
//! body shape, and what is signed (multipart and JSON bodies never are, protocol.md §7).

use super::*;

/// Checks that `r` is signed over its URL alone, and not with `fields` as form parameters.
fn signed_without_body(server: &Server, r: &Recorded, fields: &[(&str, &str)]) {
    let auth = r.header("authorization").unwrap();
    let url = server.full_url(r);
    assert!(
        verify_oauth1(&creds(), &r.method, &url, &[], auth),
        "{}",
        r.uri
    );
    assert!(!verify_oauth1(
        &creds(),
        &r.method,
        &url,
        &pairs(fields),
        auth
    ));
}

fn json_body(r: &Recorded) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

fn one_shot(category: Option<MediaCategory>) -> OneShotRequest {
    OneShotRequest {
        media_type: "image/png".into(),
        media_category: category,
        additional_owners: vec!["111".into(), "222".into()],
        data: pattern(3000),
    }
}

fn subtitles_request() -> SubtitlesRequest {
    SubtitlesRequest {
        video: MediaId::from(ID),
        video_category: Some(MediaCategory::AmplifyVideo),
        subtitles: MediaId::from("42"),
        language_code: "en".parse().unwrap(),
        display_name: "English".into(),
    }
}

#[tokio::test]
async fn v1_one_shot_is_multipart_to_upload_json_unsigned_body() {
    let answer = r#"{"media_id":931270813906374700,"media_id_string":"931270813906374657","media_key":"3_931270813906374657","size":3000,"expires_after_secs":86400,"image":{"image_type":"image/png","w":1,"h":1}}"#;
    let server = Server::start(vec![canned(200, answer), canned(200, answer)]).await;
    let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
    let status = c
        .upload_one_shot(one_shot(Some(MediaCategory::TweetImage)))
        .await
        .unwrap();
    assert_eq!(status.media_id, MediaId::from(ID));
    assert!(status.is_ready());
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/1.1/media/upload.json")
    );
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let fields = multipart(r).await;
    // No `command`: a POST without one is the simple upload (protocol.md §3.5).
    assert_eq!(
        text_fields(&fields),
        vec![
            ("media_category", "tweet_image"),
            ("additional_owners", "111,222")
        ]
    );
    let media: Vec<&Field> = fields.iter().filter(|f| f.name == "media").collect();
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].data, pattern(3000));
    assert_eq!(media[0].file_name, None);
    signed_without_body(&server, r, &[("media_category", "tweet_image")]);

    // Base64: a `media_data` field instead of `media`.
    let c = client(&server, ApiVersion::V1_1, AppendEncoding::Base64);
    c.upload_one_shot(one_shot(None)).await.unwrap();
    let r = &server.requests()[1];
    let fields = multipart(r).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pattern(3000));
    assert_eq!(
        text_fields(&fields),
        vec![
            ("additional_owners", "111,222"),
            ("media_data", b64.as_str())
        ]
    );
    signed_without_body(&server, r, &[("additional_owners", "111,222")]);
}

#[tokio::test]
async fn v2_one_shot_is_multipart_or_json_with_the_category_in_the_body() {
    let answer = r#"{"data":{"id":"1880000000000000000","media_key":"3_1880000000000000000","size":3000,"expires_after_secs":86400,"image":{"image_type":"image/png","w":1,"h":1}}}"#;
    let server = Server::start(vec![canned(200, answer), canned(200, answer)]).await;
    let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
    // No category given: the one the media type implies is sent (it is required, §4.5).
    let status = c.upload_one_shot(one_shot(None)).await.unwrap();
    assert_eq!(status.media_id, MediaId::from("1880000000000000000"));
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/2/media/upload")
    );
    let fields = multipart(r).await;
    assert_eq!(
        text_fields(&fields),
        vec![
            ("media_category", "tweet_image"),
            ("media_type", "image/png"),
            ("additional_owners", "111,222"),
        ]
    );
    assert_eq!(fields.last().unwrap().name, "media");
    assert_eq!(fields.last().unwrap().data, pattern(3000));
    signed_without_body(&server, r, &[("media_category", "tweet_image")]);

    let c = client(&server, ApiVersion::V2, AppendEncoding::Base64);
    c.upload_one_shot(one_shot(Some(MediaCategory::DmImage)))
        .await
        .unwrap();
    let r = &server.requests()[1];
    let body = json_body(r);
    assert_eq!(
        body,
        json!({
            "media": base64::engine::general_purpose::STANDARD.encode(pattern(3000)),
            "media_category": "dm_image",
            "media_type": "image/png",
            "additional_owners": "111,222",
        })
    );
    signed_without_body(&server, r, &[("media_category", "dm_image")]);
}

#[tokio::test]
async fn one_shot_without_an_id_is_a_protocol_error() {
    let server = Server::start(vec![canned(200, r#"{"data":{"size":3}}"#)]).await;
    let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
    let e = c.upload_one_shot(one_shot(None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn alt_text_is_json_in_both_versions_and_checked_before_sending() {
    let server = Server::start(vec![
        canned(200, ""),
        canned(200, r#"{"data":{"id":"931270813906374657"}}"#),
    ])
    .await;
    let text = "A dog \"catching\" a frisbee — 🐕";
    let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
    c.set_alt_text(&MediaId::from(ID), text).await.unwrap();
    let c2 = client(&server, ApiVersion::V2, AppendEncoding::Raw);
    c2.set_alt_text(&MediaId::from(ID), text).await.unwrap();
    let reqs = server.requests();
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/1.1/media/metadata/create.json")
    );
    assert_eq!(
        json_body(r),
        json!({"media_id": ID, "alt_text": {"text": text}})
    );
    signed_without_body(&server, r, &[("media_id", ID)]);
    let r = &reqs[1];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/2/media/metadata")
    );
    assert_eq!(
        json_body(r),
        json!({"id": ID, "metadata": {"alt_text": {"text": text}}})
    );
    signed_without_body(&server, r, &[("id", ID)]);

    // Too long, blank, or a bad id: refused before any request.
    for bad in ["x".repeat(1001), " ".to_string()] {
        let e = c2.set_alt_text(&MediaId::from(ID), &bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
    let e = c2
        .set_alt_text(&MediaId::from("../1"), "ok")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn subtitles_create_and_delete_in_both_versions() {
    let server = Server::start(vec![
        canned(200, ""),
        canned(200, ""),
        canned(200, "{}"),
        canned(200, "{}"),
        canned(
            400,
            r#"{"errors":[{"message":"BadRequest: Not found"}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}"#,
        ),
    ])
    .await;
    let en: LanguageCode = "EN".parse().unwrap();
    let v1 = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
    let v2 = client(&server, ApiVersion::V2, AppendEncoding::Raw);
    v1.attach_subtitles(&subtitles_request()).await.unwrap();
    v1.delete_subtitles(&MediaId::from(ID), None, &en)
        .await
        .unwrap();
    v2.attach_subtitles(&subtitles_request()).await.unwrap();
    v2.delete_subtitles(&MediaId::from(ID), Some(MediaCategory::AmplifyVideo), &en)
        .await
        .unwrap();
    let e = v2
        .delete_subtitles(&MediaId::from(ID), None, &en)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("check the id"), "{e}");

    let reqs = server.requests();
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/1.1/media/subtitles/create.json")
    );
    assert_eq!(
        json_body(r),
        json!({
            "media_id": ID,
            "media_category": "AmplifyVideo",
            "subtitle_info": {"subtitles": [
                {"media_id": "42", "language_code": "EN", "display_name": "English"}
            ]},
        })
    );
    signed_without_body(&server, r, &[("media_id", ID)]);
    let r = &reqs[1];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/1.1/media/subtitles/delete.json")
    );
    assert_eq!(
        json_body(r),
        json!({
            "media_id": ID,
            "media_category": "TweetVideo",
            "subtitle_info": {"subtitles": [{"language_code": "EN"}]},
        })
    );
    signed_without_body(&server, r, &[("media_id", ID)]);
    let r = &reqs[2];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/2/media/subtitles")
    );
    assert_eq!(
        json_body(r),
        json!({
            "id": ID,
            "media_category": "AmplifyVideo",
            "subtitles": {"id": "42", "language_code": "EN", "display_name": "English"},
        })
    );
    signed_without_body(&server, r, &[("id", ID)]);
    let r = &reqs[3];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("DELETE", "/2/media/subtitles")
    );
    assert_eq!(
        json_body(r),
        json!({"id": ID, "media_category": "AmplifyVideo", "language_code": "EN"})
    );
    signed_without_body(&server, r, &[("id", ID)]);

    // A DM video takes no subtitles, a blank name is refused: before any request.
    let mut req = subtitles_request();
    req.video_category = Some(MediaCategory::DmVideo);
    assert_eq!(
        v2.attach_subtitles(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut req = subtitles_request();
    req.display_name = " ".into();
    assert_eq!(
        v2.attach_subtitles(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn one_shot_is_offered_for_still_images_and_v2_subtitles_only() {
    let c = |api| {
        XClient::builder()
            .api(api)
            .credentials(Credentials::OAuth1(creds()))
            .build()
            .unwrap()
    };
    let req = |t: &str, cat: Option<MediaCategory>, total: u64, shared: Option<bool>| InitRequest {
        total_bytes: total,
        media_type: t.into(),
        media_category: cat,
        additional_owners: Vec::new(),
        shared,
    };
    let (v1, v2) = (c(ApiVersion::V1_1), c(ApiVersion::V2));
    let png = req("image/png", None, 200_000, None);
    assert!(v1.accepts_one_shot(&png) && v2.accepts_one_shot(&png));
    let srt = req("text/srt", Some(MediaCategory::Subtitles), 500, None);
    assert!(v2.accepts_one_shot(&srt) && !v1.accepts_one_shot(&srt));
    for no in [
        req("image/gif", None, 1000, None),
        req("video/mp4", Some(MediaCategory::TweetVideo), 1000, None),
        req("image/png", None, 5 * 1024 * 1024 + 1, None),
        req("image/png", None, 0, None),
        req("image/png", Some(MediaCategory::DmImage), 1000, Some(true)),
        req("image/png", Some(MediaCategory::TweetGif), 1000, None),
    ] {
        assert!(
            !v1.accepts_one_shot(&no) && !v2.accepts_one_shot(&no),
            "{no:?}"
        );
    }
}
