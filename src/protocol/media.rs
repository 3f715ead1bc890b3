//! The calls of X's media API besides the chunked upload (issue 14): the one-shot upload,
//! alt text (media metadata) and subtitles, with the limits X documents for them.
//!
//! Sources: protocol.md §3.5 (v1.1 simple upload), §4.5 (v2 `POST /2/media/upload`), §5
//! (rate limits) and §12 (media metadata and subtitles).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::MediaId;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MediaCategory;

/// The longest alt text X accepts, in characters (Unicode scalar values).
///
/// Source: protocol.md §12 (the English v1.1 `post-media-metadata-create` page and the v2
/// `CreateMediaMetadataRequest`: "<= 1000 characters"; the zh/ja pages say 420, which the
/// emulator can be configured to enforce instead).
pub const MAX_ALT_TEXT_CHARS: usize = 1000;

/// The categories of media that alt text can be added to: images and GIFs.
///
/// Source: protocol.md §12 ("Images and GIFs only").
pub fn accepts_alt_text(media_type: &str) -> bool {
    media_type.trim().to_ascii_lowercase().starts_with("image/")
}

/// Checks an alt text before it is sent: not blank, at most [`MAX_ALT_TEXT_CHARS`]
/// characters.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] saying which rule the text breaks.
pub fn check_alt_text(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the alt text is empty; describe the image in words (at most 1000 characters)",
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_ALT_TEXT_CHARS {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the alt text is {chars} characters long; X accepts at most \
                 {MAX_ALT_TEXT_CHARS}: shorten it"
            ),
        ));
    }
    Ok(())
}

/// A subtitle language code as X's v2 API takes it: two upper-case ASCII letters
/// (`^[A-Z]{2}$`, protocol.md §12), such as `EN`.
///
/// Parsing accepts either letter case and stores upper case (`"en"` becomes `EN`); anything
/// else is refused.
///
/// ```
/// use chunkwise::protocol::LanguageCode;
/// assert_eq!("en".parse::<LanguageCode>().unwrap().as_str(), "EN");
/// assert!("eng".parse::<LanguageCode>().is_err());
/// assert!("e1".parse::<LanguageCode>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LanguageCode(String);

impl LanguageCode {
    /// The code, two upper-case letters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LanguageCode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(LanguageCode(t.to_ascii_uppercase()))
        } else {
            // The input is echoed through Debug, so control characters stay escaped.
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{:?} is not a subtitle language code: X takes two letters (ISO 639-1), \
                     such as EN or JA",
                    t.chars().take(16).collect::<String>()
                ),
            ))
        }
    }
}

impl TryFrom<String> for LanguageCode {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<LanguageCode> for String {
    fn from(c: LanguageCode) -> String {
        c.0
    }
}

/// The `media_category` a subtitles call names for the video: `TweetVideo` or
/// `AmplifyVideo` (protocol.md §12; note the CamelCase, unlike INIT's `tweet_video`). A video
/// uploaded without a category is a `tweet_video` (protocol.md §2.2).
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] for any other category: X documents subtitles for those two
/// only.
pub fn subtitles_video_category(category: Option<MediaCategory>) -> Result<&'static str> {
    match category {
        None | Some(MediaCategory::TweetVideo) => Ok("TweetVideo"),
        Some(MediaCategory::AmplifyVideo) => Ok("AmplifyVideo"),
        Some(other) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "subtitles can be attached to tweet_video or amplify_video media only, not \
                 {other}"
            ),
        )),
    }
}

/// Checks a subtitle track's display name: not blank.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] if it is blank.
pub fn check_display_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the subtitle display name is empty; give the language's name, such as English",
        ));
    }
    Ok(())
}

/// A one-shot upload: the whole media in one request (v1.1 `POST media/upload.json` without a
/// command, v2 `POST /2/media/upload`; protocol.md §3.5, §4.5).
#[derive(Clone)]
pub struct OneShotRequest {
    /// The MIME type, such as `image/png`.
    pub media_type: String,
    /// The category (v2 requires one; the client guesses it from the media type when `None`).
    pub media_category: Option<MediaCategory>,
    /// User ids allowed to attach the media.
    pub additional_owners: Vec<String>,
    /// The whole file.
    pub data: Bytes,
}

impl fmt::Debug for OneShotRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneShotRequest")
            .field("media_type", &self.media_type)
            .field("media_category", &self.media_category)
            .field("additional_owners", &self.additional_owners.len())
            .field("len", &self.data.len())
            .finish()
    }
}

/// Attaches one subtitle track, a media uploaded with category `subtitles`, to a video
/// (v2 `POST /2/media/subtitles`, v1.1 `media/subtitles/create.json`; protocol.md §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitlesRequest {
    /// The video.
    pub video: MediaId,
    /// The video's category (`None`: `tweet_video`); see [`subtitles_video_category`].
    pub video_category: Option<MediaCategory>,
    /// The subtitle file's media id.
    pub subtitles: MediaId,
    /// The track's language.
    pub language_code: LanguageCode,
    /// The track's name as shown to viewers, such as `English`.
    pub display_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_text_limits_count_characters_not_bytes() {
        check_alt_text("a dog on a skateboard").unwrap();
        check_alt_text(&"é".repeat(MAX_ALT_TEXT_CHARS)).unwrap();
        let e = check_alt_text(&"é".repeat(MAX_ALT_TEXT_CHARS + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("1001 characters"), "{e}");
        assert!(check_alt_text("  \n").is_err());
        assert!(accepts_alt_text("image/gif") && accepts_alt_text("IMAGE/PNG"));
        assert!(!accepts_alt_text("video/mp4") && !accepts_alt_text("text/srt"));
    }

    #[test]
    fn language_codes_are_two_letters() {
        for ok in ["EN", "en", " ja "] {
            let c: LanguageCode = ok.parse().unwrap();
            assert_eq!(c.as_str(), ok.trim().to_ascii_uppercase());
        }
        for bad in ["", "E", "ENG", "e1", "é", "\u{1b}[", "en-US"] {
            assert!(bad.parse::<LanguageCode>().is_err(), "{bad:?}");
        }
        let e = "\u{1b}[31m"
            .parse::<LanguageCode>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        let json = serde_json::to_string(&LanguageCode("EN".into())).unwrap();
        assert_eq!(json, "\"EN\"");
        assert!(serde_json::from_str::<LanguageCode>("\"english\"").is_err());
    }

    #[test]
    fn subtitle_categories_are_camel_case_video_categories() {
        assert_eq!(subtitles_video_category(None).unwrap(), "TweetVideo");
        assert_eq!(
            subtitles_video_category(Some(MediaCategory::AmplifyVideo)).unwrap(),
            "AmplifyVideo"
        );
        for c in [MediaCategory::DmVideo, MediaCategory::TweetImage] {
            assert!(subtitles_video_category(Some(c)).is_err());
        }
    }
}
