//! Reading a spec from JSON, field by field, so that every refusal names its field by path.

use std::collections::HashSet;
use std::fmt;
use std::ops::RangeInclusive;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::*;

/// A spec was refused: `field` is its path (`outputs[0].ops[1].width`), empty for the whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

type Result<T> = std::result::Result<T, SpecError>;

impl Spec {
    /// Parses and validates a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Spec> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| SpecError::new("", format!("not valid JSON: {e}")))?;
        Spec::from_json_value(&value)
    }

    /// Parses and validates a spec from a JSON value.
    pub fn from_json_value(value: &Value) -> Result<Spec> {
        let spec = Obj::root(value)?;
        spec.only(&[
            "outputs",
            "placeholder",
            "keep_metadata",
            "webhook",
            "priority",
            "sprite",
            "video",
        ])?;

        let outputs_value = spec.required("outputs")?;
        let Some(items) = outputs_value.as_array() else {
            return Err(SpecError::new("outputs", "must be an array"));
        };
        if items.is_empty() || items.len() > MAX_OUTPUTS {
            return Err(SpecError::new(
                "outputs",
                format!("must hold 1 to {MAX_OUTPUTS} outputs, not {}", items.len()),
            ));
        }
        let mut outputs = Vec::with_capacity(items.len());
        let mut names = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("outputs[{i}]");
            let output = parse_output(item, &path)?;
            if !names.insert(output.name.clone()) {
                return Err(SpecError::new(
                    format!("{path}.name"),
                    format!("`{}` is used by another output", output.name),
                ));
            }
            outputs.push(output);
        }

        let sprite = spec.get("sprite").map(parse_sprite).transpose()?;
        if sprite.is_some() {
            for (i, output) in outputs.iter().enumerate() {
                if output.name == SPRITE_OUTPUT || output.name == SPRITE_TRACK_OUTPUT {
                    return Err(SpecError::new(
                        format!("outputs[{i}].name"),
                        format!("`{}` is reserved for the sprite sheet", output.name),
                    ));
                }
            }
        }

        Ok(Spec {
            outputs,
            placeholder: spec.choice("placeholder")?,
            keep_metadata: spec.boolean("keep_metadata")?.unwrap_or(false),
            webhook: spec.get("webhook").map(parse_webhook).transpose()?,
            priority: spec.choice("priority")?.unwrap_or_default(),
            sprite,
            video: spec.get("video").map(parse_video).transpose()?,
        })
    }
}

fn parse_output(value: &Value, path: &str) -> Result<OutputSpec> {
    let out = Obj::new(value, path)?;
    out.only(&[
        "name",
        "ops",
        "format",
        "quality",
        "lossless",
        "keep_metadata",
        "animated",
    ])?;

    let name = out.string("name")?;
    let name = out.present("name", name)?;
    if !is_valid_name(name) {
        return Err(SpecError::new(
            out.child("name"),
            format!("must match [a-z0-9_-]{{1,{MAX_NAME_LEN}}}"),
        ));
    }

    let mut ops = Vec::new();
    if let Some(list) = out.get("ops") {
        let Some(items) = list.as_array() else {
            return Err(SpecError::new(out.child("ops"), "must be an array"));
        };
        if items.len() > MAX_OPS {
            return Err(SpecError::new(
                out.child("ops"),
                format!("at most {MAX_OPS} ops, not {}", items.len()),
            ));
        }
        for (j, item) in items.iter().enumerate() {
            ops.push(parse_op(item, &format!("{path}.ops[{j}]"))?);
        }
    }

    let format: Option<Format> = out.choice("format")?;
    let lossless = out.boolean("lossless")?.unwrap_or(false);
    if lossless && format != Some(Format::Webp) {
        return Err(SpecError::new(
            out.child("lossless"),
            "only `\"format\": \"webp\"` has a lossless mode (png is always lossless)",
        ));
    }
    Ok(OutputSpec {
        name: name.to_owned(),
        ops,
        format,
        quality: out.uint("quality", 1..=100)?.map(|q| q as u8),
        lossless,
        keep_metadata: out.boolean("keep_metadata")?,
        animated: out.boolean("animated")?.unwrap_or(false),
    })
}

pub(super) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

const DIMENSION: RangeInclusive<u32> = 1..=MAX_DIMENSION;
const CROP_EXTENT: RangeInclusive<u32> = 1..=65535;
const CROP_OFFSET: RangeInclusive<u32> = 0..=65535;

fn parse_op(value: &Value, path: &str) -> Result<Op> {
    let op = Obj::new(value, path)?;
    let kind = op.string("op")?;
    match op.present("op", kind)? {
        "resize" => parse_resize(&op, path),
        "crop" => parse_crop(&op),
        "rotate" => parse_rotate(&op),
        "flip" => {
            op.only(&["op", "axis"])?;
            let axis = op.choice("axis")?;
            Ok(Op::Flip {
                axis: op.present("axis", axis)?,
            })
        }
        "grayscale" => {
            op.only(&["op"])?;
            Ok(Op::Grayscale)
        }
        "blur" => {
            op.only(&["op", "sigma"])?;
            let sigma = op.float("sigma", 0.1..=100.0)?;
            Ok(Op::Blur {
                sigma: op.present("sigma", sigma)?,
            })
        }
        "sharpen" => {
            op.only(&["op", "sigma", "amount"])?;
            Ok(Op::Sharpen {
                sigma: op.float("sigma", 0.1..=10.0)?.unwrap_or(1.0),
                amount: op.float("amount", 0.0..=10.0)?.unwrap_or(1.0),
            })
        }
        kind @ ("brightness" | "contrast") => {
            op.only(&["op", "value"])?;
            let value = op.float("value", 0.0..=10.0)?;
            let value = op.present("value", value)?;
            Ok(if kind == "brightness" {
                Op::Brightness { value }
            } else {
                Op::Contrast { value }
            })
        }
        other => Err(SpecError::new(
            op.child("op"),
            format!(
                "unknown op `{other}` (expected one of: resize, crop, rotate, flip, grayscale, \
                 blur, sharpen, brightness, contrast)"
            ),
        )),
    }
}

fn parse_resize(op: &Obj<'_>, path: &str) -> Result<Op> {
    op.only(&[
        "op",
        "width",
        "height",
        "fit",
        "filter",
        "enlarge",
        "background",
        "gravity",
    ])?;
    let width = op.uint("width", DIMENSION)?;
    let height = op.uint("height", DIMENSION)?;
    if width.is_none() && height.is_none() {
        return Err(SpecError::new(
            path,
            "resize needs `width`, `height` or both",
        ));
    }
    let background = match op.string("background")? {
        None => None,
        Some(text) => Some(Color::parse(text).ok_or_else(|| {
            SpecError::new(
                op.child("background"),
                "must be #rgb, #rrggbb, #rrggbbaa, white, black or transparent",
            )
        })?),
    };
    Ok(Op::Resize(Resize {
        width,
        height,
        fit: op.choice("fit")?.unwrap_or(Fit::Inside),
        filter: op.choice("filter")?.unwrap_or(Filter::Lanczos3),
        enlarge: op.boolean("enlarge")?.unwrap_or(false),
        background,
        gravity: op.choice("gravity")?.unwrap_or(Gravity::Center),
    }))
}

fn parse_crop(op: &Obj<'_>) -> Result<Op> {
    op.only(&["op", "x", "y", "width", "height", "gravity"])?;
    let width = op.uint("width", CROP_EXTENT)?;
    let width = op.present("width", width)?;
    let height = op.uint("height", CROP_EXTENT)?;
    let height = op.present("height", height)?;
    let x = op.uint("x", CROP_OFFSET)?;
    let y = op.uint("y", CROP_OFFSET)?;
    let gravity: Option<Gravity> = op.choice("gravity")?;
    let anchor = match (x, y, gravity) {
        (Some(x), Some(y), None) => CropAnchor::At { x, y },
        (None, None, gravity) => CropAnchor::Gravity {
            gravity: gravity.unwrap_or(Gravity::Center),
        },
        (_, _, Some(_)) => {
            return Err(SpecError::new(
                op.child("gravity"),
                "give either `x` and `y`, or `gravity`, not both",
            ))
        }
        (Some(_), None, None) => return Err(SpecError::new(op.child("y"), "is required with `x`")),
        (None, Some(_), None) => return Err(SpecError::new(op.child("x"), "is required with `y`")),
    };
    Ok(Op::Crop(Crop {
        width,
        height,
        anchor,
    }))
}

fn parse_rotate(op: &Obj<'_>) -> Result<Op> {
    op.only(&["op", "degrees"])?;
    let degrees = match op.get("degrees").and_then(Value::as_u64) {
        Some(90) => Rotation::Quarter,
        Some(180) => Rotation::Half,
        Some(270) => Rotation::ThreeQuarters,
        _ => {
            return Err(SpecError::new(
                op.child("degrees"),
                "must be 90, 180 or 270",
            ))
        }
    };
    Ok(Op::Rotate { degrees })
}

/// Most frames a spec may ask a video for (the deployment's `--max-frames` thins further).
const MAX_VIDEO_FRAMES: RangeInclusive<u32> = 1..=100_000;
/// Longest interval or latest time a spec may name, in seconds (a day).
const MAX_VIDEO_SECONDS: f64 = 86_400.0;

fn parse_video(value: &Value) -> Result<VideoSpec> {
    let video = Obj::new(value, "video")?;
    video.only(&["frames", "max_frames"])?;
    let frames = match video.get("frames") {
        None => FrameChoice::Poster,
        Some(value) => parse_frame_choice(value)?,
    };
    Ok(VideoSpec {
        frames,
        max_frames: video
            .uint("max_frames", MAX_VIDEO_FRAMES)?
            .unwrap_or(DEFAULT_VIDEO_FRAMES),
    })
}

/// `"poster"`, `"keyframes"`, `"scenes"`, or one of `{"every": S}`, `{"count": N}`,
/// `{"at": [S, ...]}`, `{"scenes": T}`.
fn parse_frame_choice(value: &Value) -> Result<FrameChoice> {
    const EXPECTED: &str = "must be \"poster\", \"keyframes\", \"scenes\", or {\"every\": S}, \
         {\"count\": N}, {\"at\": [S, ...]} or {\"scenes\": T}";
    match value {
        Value::String(name) => match name.as_str() {
            "poster" => Ok(FrameChoice::Poster),
            "keyframes" => Ok(FrameChoice::Keyframes),
            "scenes" => Ok(FrameChoice::Scenes(DEFAULT_SCENE_THRESHOLD)),
            _ => Err(SpecError::new("video.frames", EXPECTED)),
        },
        Value::Object(map) if map.len() == 1 => {
            let choice = Obj::new(value, "video.frames")?;
            if let Some(every) = choice.float("every", 0.0..=MAX_VIDEO_SECONDS)? {
                if every <= 0.0 {
                    return Err(SpecError::new(
                        "video.frames.every",
                        "must be over 0 seconds",
                    ));
                }
                return Ok(FrameChoice::Every(f64::from(every)));
            }
            if let Some(count) = choice.uint("count", MAX_VIDEO_FRAMES)? {
                return Ok(FrameChoice::Count(count));
            }
            if let Some(scenes) = choice.float("scenes", 0.0..=1.0)? {
                if scenes <= 0.0 {
                    return Err(SpecError::new("video.frames.scenes", "must be in (0, 1]"));
                }
                return Ok(FrameChoice::Scenes(f64::from(scenes)));
            }
            if let Some(times) = choice.get("at") {
                return parse_times(times).map(FrameChoice::At);
            }
            Err(SpecError::new("video.frames", EXPECTED))
        }
        _ => Err(SpecError::new("video.frames", EXPECTED)),
    }
}

/// 1 to 2,000 times in seconds, each in 0..=86400: never more than a job may take
/// (`--max-frames` is 2,000 by default), and short enough to fit in a query string.
fn parse_times(value: &Value) -> Result<Vec<f64>> {
    let field = "video.frames.at";
    let items = value
        .as_array()
        .filter(|items| (1..=2_000).contains(&items.len()))
        .ok_or_else(|| SpecError::new(field, "must be an array of 1 to 2000 times in seconds"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_f64()
                .filter(|t| (0.0..=MAX_VIDEO_SECONDS).contains(t))
                .ok_or_else(|| {
                    SpecError::new(
                        format!("{field}[{i}]"),
                        "must be a number of seconds in 0..=86400",
                    )
                })
        })
        .collect()
}

fn parse_webhook(value: &Value) -> Result<Webhook> {
    let hook = Obj::new(value, "webhook")?;
    hook.only(&["url"])?;
    let url = hook.string("url")?;
    let url = hook.present("url", url)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let valid = match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && url.len() <= 2048 && !url.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(SpecError::new(
            "webhook.url",
            "must be an absolute http:// or https:// URL of at most 2048 characters",
        ));
    }
    Ok(Webhook {
        url: url.to_owned(),
    })
}

fn parse_sprite(value: &Value) -> Result<SpriteSpec> {
    let sprite = Obj::new(value, "sprite")?;
    sprite.only(&["columns", "width", "interval", "format", "quality"])?;
    let columns = sprite.uint("columns", 1..=64)?;
    let width = sprite.uint("width", 8..=1024)?;
    let format = sprite.choice("format")?.unwrap_or(Format::Jpeg);
    if format == Format::Gif {
        return Err(SpecError::new(
            "sprite.format",
            "must be jpeg, png, webp or avif",
        ));
    }
    Ok(SpriteSpec {
        columns: sprite.present("columns", columns)?,
        width: sprite.present("width", width)?,
        interval: sprite.float("interval", 0.001..=3600.0)?.unwrap_or(1.0),
        format,
        quality: sprite.uint("quality", 1..=100)?.map(|q| q as u8),
    })
}

/// A JSON object being read, with the path that names it in errors.
struct Obj<'v> {
    path: String,
    map: &'v Map<String, Value>,
}

impl<'v> Obj<'v> {
    fn root(value: &'v Value) -> Result<Self> {
        Self::new(value, "")
    }

    fn new(value: &'v Value, path: &str) -> Result<Self> {
        match value.as_object() {
            Some(map) => Ok(Obj {
                path: path.to_owned(),
                map,
            }),
            None => Err(SpecError::new(path, "must be a JSON object")),
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Refuses any field not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(SpecError::new(
                self.child(key),
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            )),
        }
    }

    /// The field's value; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'v Value> {
        self.get(key)
            .ok_or_else(|| SpecError::new(self.child(key), "is required"))
    }

    fn present<T>(&self, key: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| SpecError::new(self.child(key), "is required"))
    }

    fn uint(&self, key: &str, range: RangeInclusive<u32>) -> Result<Option<u32>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                SpecError::new(
                    self.child(key),
                    format!("must be an integer in {}..={}", range.start(), range.end()),
                )
            })
    }

    /// A number in `range`, judged before it is narrowed to `f32`.
    fn float(&self, key: &str, range: RangeInclusive<f64>) -> Result<Option<f32>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_f64()
            .filter(|n| range.contains(n))
            .map(|n| Some(n as f32))
            .ok_or_else(|| {
                SpecError::new(
                    self.child(key),
                    format!("must be a number in {}..={}", range.start(), range.end()),
                )
            })
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(SpecError::new(self.child(key), "must be true or false")),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'v str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SpecError::new(self.child(key), "must be a string")),
        }
    }

    /// A string naming one variant of `T` (its serde name).
    fn choice<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        choice_from(value)
            .map(Some)
            .map_err(|message| SpecError::new(self.child(key), message))
    }
}

/// Reads an enum from its serde name, with serde's "expected one of ..." as the message.
pub(super) fn choice_from<T: DeserializeOwned>(value: &Value) -> std::result::Result<T, String> {
    if !value.is_string() {
        return Err("must be a string".to_owned());
    }
    T::deserialize(value).map_err(|e| {
        let text = e.to_string();
        // serde says "unknown variant `x`, expected one of `a`, `b`": keep it, minus the noise.
        text.split(" at line ").next().unwrap_or(&text).to_owned()
    })
}
