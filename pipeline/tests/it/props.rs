//! Property tests of the parsers that take user input: the JSON spec, the query shorthand and
//! raw video frame buffers. Nothing panics; whatever is accepted round-trips; whatever is
//! refused says which field.

use pipeline::engine::{RawLayout, RawPixelFormat};
use pipeline::spec::Spec;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Words a spec is made of, so generated JSON often gets deep into the parser.
const WORDS: &[&str] = &[
    "outputs",
    "name",
    "ops",
    "op",
    "resize",
    "crop",
    "rotate",
    "flip",
    "grayscale",
    "blur",
    "sharpen",
    "brightness",
    "contrast",
    "width",
    "height",
    "fit",
    "cover",
    "contain",
    "fill",
    "inside",
    "filter",
    "lanczos3",
    "enlarge",
    "background",
    "gravity",
    "center",
    "smart",
    "format",
    "jpeg",
    "png",
    "webp",
    "avif",
    "gif",
    "quality",
    "lossless",
    "keep_metadata",
    "placeholder",
    "blurhash",
    "webhook",
    "url",
    "priority",
    "high",
    "low",
    "sprite",
    "columns",
    "degrees",
    "axis",
    "vertical",
    "sigma",
    "amount",
    "value",
    "x",
    "y",
    "thumb",
    "#ff0000",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-z_#0-9]{0,12}",
        1 => any::<String>(),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..20_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-10.0f64..100.0).prop_map(|f| json!(f)),
        word().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A spec-shaped object: an `outputs` list of outputs with ops, fields drawn from the words.
fn spec_like() -> impl Strategy<Value = Value> {
    let op = (
        prop::sample::select(&WORDS[4..13]),
        prop::collection::vec((word(), scalar()), 0..4),
    )
        .prop_map(|(name, fields)| {
            let mut op: Map<String, Value> = fields.into_iter().collect();
            op.insert("op".into(), Value::from(name));
            Value::Object(op)
        });
    let output = (
        "[a-z0-9_-]{0,34}",
        prop::collection::vec(op, 0..4),
        prop::collection::vec((word(), scalar()), 0..3),
    )
        .prop_map(|(name, ops, extra)| {
            let mut output: Map<String, Value> = extra.into_iter().collect();
            output.insert("name".into(), Value::from(name));
            output.insert("ops".into(), Value::Array(ops));
            Value::Object(output)
        });
    (
        prop::collection::vec(output, 0..18),
        prop::collection::vec((word(), scalar()), 0..2),
    )
        .prop_map(|(outputs, extra)| {
            let mut spec: Map<String, Value> = extra.into_iter().collect();
            spec.insert("outputs".into(), Value::Array(outputs));
            Value::Object(spec)
        })
}

/// Accepted specs survive a trip through JSON; refused ones say what and where.
fn check(result: Result<Spec, pipeline::spec::SpecError>) -> Result<(), TestCaseError> {
    match result {
        Ok(spec) => {
            prop_assert!(!spec.outputs.is_empty() && spec.outputs.len() <= 16);
            let again = Spec::from_json(&spec.to_json());
            prop_assert_eq!(again.as_ref(), Ok(&spec), "{}", spec.to_json());
        }
        Err(e) => prop_assert!(!e.message.is_empty(), "{e:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_spec_parser_takes_any_text(text in any::<String>()) {
        check(Spec::from_json(&text))?;
    }

    #[test]
    fn the_spec_parser_takes_any_json(value in value()) {
        check(Spec::from_json_value(&value))?;
    }

    #[test]
    fn spec_shaped_json_is_accepted_or_refused_by_field(value in spec_like()) {
        let result = Spec::from_json_value(&value);
        if let Err(e) = &result {
            // Errors name their field (unless the field's own name is empty).
            prop_assert!(!e.field.is_empty() || value.to_string().contains("\"\":"), "{e:?}");
        }
        check(result)?;
    }

    #[test]
    fn the_shorthand_takes_any_pairs(
        pairs in prop::collection::vec(
            (prop::sample::select(&["w", "h", "fit", "filter", "enlarge", "gravity", "background",
                                     "format", "q", "lossless", "placeholder", "priority"][..]),
             prop_oneof![
                 (0u32..20_000).prop_map(|n| n.to_string()),
                 word(),
                 any::<String>(),
             ]),
            0..6),
    ) {
        let result = Spec::from_shorthand(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = &result {
            // Refusals are named by a query parameter's name (a given one, or `w` when a
            // resize has no size).
            prop_assert!(Spec::is_shorthand_key(&e.field), "{e:?} for {pairs:?}");
        }
        check(result)?;
    }

    #[test]
    fn raw_frame_buffers_are_whole_frames_or_refused(
        format in prop::sample::select(&[RawPixelFormat::Rgb24, RawPixelFormat::Rgba,
                                          RawPixelFormat::Gray, RawPixelFormat::Yuv420p,
                                          RawPixelFormat::Nv12][..]),
        width in 0u32..80,
        height in 0u32..80,
        frames in 0usize..4,
        extra in prop_oneof![Just(0usize), 1usize..7],
        max_pixels in prop_oneof![Just(100_000_000u64), 1u64..4_000],
    ) {
        let layout = RawLayout { pixel_format: format, width, height };
        let frame_len = format.frame_len(width, height) as usize;
        let buffer = vec![0x80u8; frame_len * frames + extra];
        let expected = width > 0
            && height > 0
            && u64::from(width) * u64::from(height) <= max_pixels
            && !buffer.is_empty()
            && buffer.len().is_multiple_of(frame_len.max(1));
        match layout.split(&buffer, max_pixels) {
            Ok(split) => {
                prop_assert!(expected);
                prop_assert_eq!(split.len(), buffer.len() / frame_len);
                for frame in split {
                    let image = layout.to_image(frame).unwrap();
                    prop_assert_eq!((image.width(), image.height()), (width, height));
                }
            }
            Err(e) => {
                prop_assert!(!expected, "refused a good buffer: {e}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn huge_claimed_frame_sizes_never_overflow(
        format in prop::sample::select(&[RawPixelFormat::Rgb24, RawPixelFormat::Rgba,
                                          RawPixelFormat::Gray, RawPixelFormat::Yuv420p,
                                          RawPixelFormat::Nv12][..]),
        width in any::<u32>(),
        height in any::<u32>(),
        len in any::<u64>(),
    ) {
        let layout = RawLayout { pixel_format: format, width, height };
        // Must answer (not panic) for any claim, whatever the buffer length.
        let _ = layout.frame_count(len, 100_000_000);
    }
}
