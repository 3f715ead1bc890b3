//! Protocol limits of X's media upload, as named constants with their sources.
//!
//! Source for all of them: `shared/protocol.md` §2.3–2.4 (the X API docs and server error
//! texts quoted there). The sizes are binary MiB because the server's own error texts say
//! "File size exceeds 5242880 bytes." and "File size exceeds 15728640 bytes.".

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Highest number of APPEND segments one upload may use: `segment_index` runs 0..=999.
///
/// Source: X API APPEND reference and the server text "SegmentIndex must be between 0 and 999."
pub const MAX_SEGMENTS: u32 = 1000;

/// Default per-APPEND body limit: 5 MiB (5,242,880 bytes) of what goes on the wire.
///
/// Source: X API APPEND reference ("each chunk ≤ 5 MB"); whether that is 5 MiB or 5,000,000
/// bytes is unconfirmed (protocol.md §11.1), so it is configurable everywhere.
pub const DEFAULT_MAX_APPEND_BYTES: u64 = 5 * MIB;

/// Image size limit: 5 MiB. Source: "Image file size must be <= 5242880 bytes" (code 324).
pub const IMAGE_MAX_BYTES: u64 = 5 * MIB;
/// Animated GIF size limit: 15 MiB. Source: "File size exceeds 15728640 bytes.".
pub const GIF_MAX_BYTES: u64 = 15 * MIB;
/// Video size limit: 512 MiB. Source: "File size exceeds 536870912 bytes." and the April
/// 2025 v2 spec's `total_bytes` maximum. (Premium v2 accounts may go higher; configurable in
/// the emulator.)
pub const VIDEO_MAX_BYTES: u64 = 512 * MIB;
/// Subtitles: no documented limit; treated like images.
pub const SUBTITLES_MAX_BYTES: u64 = 5 * MIB;

/// The largest payload one APPEND can carry when the body limit is `max_body` bytes on the
/// wire. Raw `media` carries it all; base64 `media_data` carries 3 bytes per 4 characters.
///
/// ```
/// use chunkwise::limits::{max_payload_per_append, DEFAULT_MAX_APPEND_BYTES};
/// assert_eq!(max_payload_per_append(DEFAULT_MAX_APPEND_BYTES, false), 5_242_880);
/// assert_eq!(max_payload_per_append(DEFAULT_MAX_APPEND_BYTES, true), 3_932_160);
/// ```
pub const fn max_payload_per_append(max_body: u64, base64: bool) -> u64 {
    if base64 { max_body / 4 * 3 } else { max_body }
}

/// The `media_category` of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaCategory {
    /// `tweet_image`
    TweetImage,
    /// `tweet_gif`
    TweetGif,
    /// `tweet_video`
    TweetVideo,
    /// `amplify_video`
    AmplifyVideo,
    /// `dm_image`
    DmImage,
    /// `dm_gif`
    DmGif,
    /// `dm_video`
    DmVideo,
    /// `subtitles`
    Subtitles,
}

impl MediaCategory {
    /// All categories, in documentation order.
    pub const ALL: [MediaCategory; 8] = [
        MediaCategory::TweetImage,
        MediaCategory::TweetGif,
        MediaCategory::TweetVideo,
        MediaCategory::AmplifyVideo,
        MediaCategory::DmImage,
        MediaCategory::DmGif,
        MediaCategory::DmVideo,
        MediaCategory::Subtitles,
    ];

    /// The wire name, lower case (`tweet_video`).
    pub const fn as_str(self) -> &'static str {
        match self {
            MediaCategory::TweetImage => "tweet_image",
            MediaCategory::TweetGif => "tweet_gif",
            MediaCategory::TweetVideo => "tweet_video",
            MediaCategory::AmplifyVideo => "amplify_video",
            MediaCategory::DmImage => "dm_image",
            MediaCategory::DmGif => "dm_gif",
            MediaCategory::DmVideo => "dm_video",
            MediaCategory::Subtitles => "subtitles",
        }
    }

    /// The documented size limit of the category, in bytes.
    pub const fn max_bytes(self) -> u64 {
        match self {
            MediaCategory::TweetImage | MediaCategory::DmImage => IMAGE_MAX_BYTES,
            MediaCategory::TweetGif | MediaCategory::DmGif => GIF_MAX_BYTES,
            MediaCategory::TweetVideo | MediaCategory::AmplifyVideo | MediaCategory::DmVideo => {
                VIDEO_MAX_BYTES
            }
            MediaCategory::Subtitles => SUBTITLES_MAX_BYTES,
        }
    }

    /// Whether FINALIZE starts asynchronous processing (video and GIF categories).
    pub const fn is_async(self) -> bool {
        matches!(
            self,
            MediaCategory::TweetGif
                | MediaCategory::DmGif
                | MediaCategory::TweetVideo
                | MediaCategory::AmplifyVideo
                | MediaCategory::DmVideo
        )
    }

    /// The `media_key` prefix the server uses for this category (image 3, video 7,
    /// amplify 13, gif 16; protocol.md §2.1).
    pub const fn media_key_prefix(self) -> u32 {
        match self {
            MediaCategory::TweetImage | MediaCategory::DmImage | MediaCategory::Subtitles => 3,
            MediaCategory::TweetVideo | MediaCategory::DmVideo => 7,
            MediaCategory::AmplifyVideo => 13,
            MediaCategory::TweetGif | MediaCategory::DmGif => 16,
        }
    }

    /// The category a server picks when none is given, from the MIME type (protocol.md §2.2).
    pub fn guess_from_media_type(media_type: &str) -> Option<MediaCategory> {
        let t = media_type.to_ascii_lowercase();
        if t == "image/gif" {
            Some(MediaCategory::TweetGif)
        } else if t.starts_with("image/") {
            Some(MediaCategory::TweetImage)
        } else if t.starts_with("video/") {
            Some(MediaCategory::TweetVideo)
        } else if t == "text/srt" || t == "text/vtt" {
            Some(MediaCategory::Subtitles)
        } else {
            None
        }
    }
}

impl fmt::Display for MediaCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no media category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown media category {0:?}; expected one of tweet_image, tweet_gif, tweet_video, amplify_video, dm_image, dm_gif, dm_video, subtitles"
)]
pub struct UnknownCategory(pub String);

impl FromStr for MediaCategory {
    type Err = UnknownCategory;

    /// Parses a category name, ignoring ASCII case (the v1.1 tutorial sends `TWEET_IMAGE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        MediaCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == lower)
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_round_trip_and_ignore_case() {
        for c in MediaCategory::ALL {
            assert_eq!(c.as_str().parse::<MediaCategory>(), Ok(c));
            assert_eq!(c.as_str().to_uppercase().parse::<MediaCategory>(), Ok(c));
        }
        assert!("tweet_audio".parse::<MediaCategory>().is_err());
    }

    #[test]
    fn limits_are_binary_mib() {
        assert_eq!(MediaCategory::TweetImage.max_bytes(), 5_242_880);
        assert_eq!(MediaCategory::TweetGif.max_bytes(), 15_728_640);
        assert_eq!(MediaCategory::DmVideo.max_bytes(), 536_870_912);
    }
}
