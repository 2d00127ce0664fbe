//! The transform spec: what a job asks the engine to make (API.md § The transform spec).
//!
//! A [`Spec`] only exists validated: it is built by [`Spec::from_json`],
//! [`Spec::from_json_value`] or [`Spec::from_shorthand`], each of which names the offending field
//! when it refuses (`outputs[0].ops[1].width: must be an integer in 1..=16384`). Its JSON form
//! ([`Spec::to_json`]) parses back to the same value, so it can travel through the queue.

mod parse;
mod shorthand;

use serde::{Deserialize, Serialize};

pub use parse::SpecError;
pub use shorthand::SHORTHAND_OUTPUT;

/// At most this many outputs per spec.
pub const MAX_OUTPUTS: usize = 16;
/// At most this many ops per output.
pub const MAX_OPS: usize = 32;
/// Largest width or height a resize, a sprite or padding may ask for.
pub const MAX_DIMENSION: u32 = 16384;
/// Output names are `[a-z0-9_-]{1,32}`.
pub const MAX_NAME_LEN: usize = 32;
/// Output names that frame jobs with a sprite reserve for the sprite sheet and its track.
pub const SPRITE_OUTPUT: &str = "sprite";
pub const SPRITE_TRACK_OUTPUT: &str = "sprite_vtt";

/// A validated transform spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub outputs: Vec<OutputSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<Placeholder>,
    /// Default for outputs that do not say: keep EXIF and ICC metadata (where the format can).
    #[serde(skip_serializing_if = "is_false")]
    pub keep_metadata: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// Frame jobs and videos: a sprite sheet of every frame plus a WebVTT thumbnail track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sprite: Option<SpriteSpec>,
    /// Videos: which frames to take (default: the poster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoSpec>,
}

/// Which frames of a video a job takes (API.md § Video files).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoSpec {
    pub frames: FrameChoice,
    /// More chosen frames are thinned evenly to this many (and to `--max-frames`).
    pub max_frames: u32,
}

impl Default for VideoSpec {
    fn default() -> Self {
        VideoSpec {
            frames: FrameChoice::Poster,
            max_frames: DEFAULT_VIDEO_FRAMES,
        }
    }
}

/// Frames a video job takes when the spec does not say how many at most.
pub const DEFAULT_VIDEO_FRAMES: u32 = 100;

/// The scene-change threshold of `"scenes"` without a number.
pub const DEFAULT_SCENE_THRESHOLD: f64 = 0.3;

/// The frames of a video a job takes.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameChoice {
    /// One frame that stands for the video: never a black, blank or fade frame when the video
    /// has a better one.
    Poster,
    /// One frame every this many seconds, from 0.
    Every(f64),
    /// This many frames spread evenly over the duration.
    Count(u32),
    /// The frames at these times (seconds).
    At(Vec<f64>),
    /// Every keyframe.
    Keyframes,
    /// The first frame of every scene, a new scene starting where frames differ more than
    /// this threshold (0–1].
    Scenes(f64),
}

impl Serialize for FrameChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let value = match self {
            FrameChoice::Poster => json!("poster"),
            FrameChoice::Keyframes => json!("keyframes"),
            FrameChoice::Every(seconds) => json!({ "every": seconds }),
            FrameChoice::Count(count) => json!({ "count": count }),
            FrameChoice::At(times) => json!({ "at": times }),
            FrameChoice::Scenes(threshold) => json!({ "scenes": threshold }),
        };
        value.serialize(serializer)
    }
}

/// One named variant the job produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputSpec {
    pub name: String,
    pub ops: Vec<Op>,
    /// `None`: the source's format (JPEG for raw frames).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// 1–100; `None`: the format's default ([`Format::default_quality`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// WebP only: encode losslessly.
    #[serde(skip_serializing_if = "is_false")]
    pub lossless: bool,
    /// Overrides [`Spec::keep_metadata`] for this output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_metadata: Option<bool>,
    /// Keep an animated GIF, WebP or APNG animated when the output is GIF or WebP; otherwise
    /// (and by default) the first frame is used.
    #[serde(skip_serializing_if = "is_false")]
    pub animated: bool,
}

impl Spec {
    /// Whether `output` keeps the source's metadata.
    pub fn keeps_metadata(&self, output: &OutputSpec) -> bool {
        output.keep_metadata.unwrap_or(self.keep_metadata)
    }

    /// The canonical JSON form; [`Spec::from_json`] reads it back to an equal value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serializes")
    }
}

/// An operation, applied in the order the output lists them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Resize(Resize),
    Crop(Crop),
    Rotate {
        degrees: Rotation,
    },
    Flip {
        axis: Axis,
    },
    Grayscale,
    Blur {
        sigma: f32,
    },
    Sharpen {
        sigma: f32,
        amount: f32,
    },
    /// Multiplies every colour channel: 1 leaves the image as it is (CSS `brightness()`).
    Brightness {
        value: f32,
    },
    /// Scales the distance from mid-grey: 1 leaves the image as it is (CSS `contrast()`).
    Contrast {
        value: f32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resize {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub fit: Fit,
    pub filter: Filter,
    #[serde(skip_serializing_if = "is_false")]
    pub enlarge: bool,
    /// `contain` padding; `None`: transparent where the output format has alpha, else white.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<Color>,
    /// Which part `cover` keeps.
    #[serde(skip_serializing_if = "Gravity::is_center")]
    pub gravity: Gravity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Keep the aspect ratio; the result fits inside width × height.
    Inside,
    /// Keep the aspect ratio; cover width × height, then crop to exactly that.
    Cover,
    /// Keep the aspect ratio; fit inside, then pad to exactly width × height.
    Contain,
    /// Ignore the aspect ratio; stretch to exactly width × height.
    Fill,
    /// Keep the aspect ratio; the smallest size that covers width × height, no crop.
    Outside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Lanczos3,
    CatmullRom,
    Bilinear,
    Nearest,
}

/// A crop: a rectangle at `x`,`y`, or of `width` × `height` placed by a gravity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crop {
    pub width: u32,
    pub height: u32,
    #[serde(flatten)]
    pub anchor: CropAnchor,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CropAnchor {
    At { x: u32, y: u32 },
    Gravity { gravity: Gravity },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gravity {
    Center,
    North,
    South,
    East,
    West,
    Northeast,
    Northwest,
    Southeast,
    Southwest,
    /// The busiest region: edges and saturated colour.
    Smart,
}

impl Gravity {
    fn is_center(&self) -> bool {
        *self == Gravity::Center
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u16")]
pub enum Rotation {
    Quarter,
    Half,
    ThreeQuarters,
}

impl From<Rotation> for u16 {
    fn from(r: Rotation) -> u16 {
        match r {
            Rotation::Quarter => 90,
            Rotation::Half => 180,
            Rotation::ThreeQuarters => 270,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Horizontal,
    Vertical,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Avif,
    Gif,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
            Format::Gif => "gif",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
            Format::Gif => "image/gif",
        }
    }

    pub fn has_alpha(self) -> bool {
        !matches!(self, Format::Jpeg)
    }

    /// The quality used when an output does not give one.
    pub fn default_quality(self) -> u8 {
        match self {
            Format::Jpeg | Format::Webp => 80,
            Format::Avif => 60,
            // PNG is lossless: quality picks the compression effort. GIF: the palette effort.
            Format::Png | Format::Gif => 80,
        }
    }

    /// The largest width or height the format (or its encoder) can hold.
    pub fn max_dimension(self) -> u32 {
        match self {
            Format::Webp => 16383,
            Format::Jpeg | Format::Gif => 65535,
            Format::Avif => 65535,
            Format::Png => 1 << 24,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
            Format::Gif => "gif",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placeholder {
    Blurhash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub url: String,
}

/// A sprite sheet: every frame scaled to `width`, laid out `columns` per row, plus a WebVTT
/// track whose cues point into the sheet (`#xywh=`), one cue per `interval` seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpriteSpec {
    pub columns: u32,
    pub width: u32,
    pub interval: f32,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
}

/// An RGBA colour, written `#rrggbb` or `#rrggbbaa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Color(pub [u8; 4]);

impl Color {
    pub const WHITE: Color = Color([255, 255, 255, 255]);
    pub const TRANSPARENT: Color = Color([0, 0, 0, 0]);

    /// Parses `#rgb`, `#rrggbb`, `#rrggbbaa`, `white`, `black` or `transparent`.
    pub fn parse(text: &str) -> Option<Color> {
        match text {
            "white" => return Some(Color::WHITE),
            "black" => return Some(Color([0, 0, 0, 255])),
            "transparent" => return Some(Color::TRANSPARENT),
            _ => {}
        }
        let hex = text.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        match hex.len() {
            3 => {
                let nibble = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).ok().map(|v| v * 17);
                Some(Color([nibble(0)?, nibble(1)?, nibble(2)?, 255]))
            }
            6 => Some(Color([byte(0)?, byte(2)?, byte(4)?, 255])),
            8 => Some(Color([byte(0)?, byte(2)?, byte(4)?, byte(6)?])),
            _ => None,
        }
    }
}

impl From<Color> for String {
    fn from(c: Color) -> String {
        let [r, g, b, a] = c.0;
        if a == 255 {
            format!("#{r:02x}{g:02x}{b:02x}")
        } else {
            format!("#{r:02x}{g:02x}{b:02x}{a:02x}")
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
