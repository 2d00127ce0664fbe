//! The transform spec: good specs round-trip, bad ones name their field.

use pipeline::spec::{
    Color, CropAnchor, Fit, Format, Gravity, Op, Placeholder, Priority, Spec, SpecError,
    SHORTHAND_OUTPUT,
};

const API_EXAMPLE: &str = r#"{
  "outputs": [
    {"name": "thumb", "ops": [{"op": "resize", "width": 256, "height": 256, "fit": "cover"}],
     "format": "webp", "quality": 80},
    {"name": "large", "ops": [{"op": "resize", "width": 1600}], "format": "jpeg", "quality": 85}
  ],
  "placeholder": "blurhash"
}"#;

const EVERY_OP: &str = r##"{
  "outputs": [{
    "name": "all-ops_1",
    "ops": [
      {"op": "resize", "width": 300, "height": 200, "fit": "contain", "filter": "catmull_rom",
       "enlarge": true, "background": "#11223344", "gravity": "north"},
      {"op": "crop", "x": 1, "y": 2, "width": 30, "height": 40},
      {"op": "crop", "width": 20, "height": 20, "gravity": "smart"},
      {"op": "rotate", "degrees": 270},
      {"op": "flip", "axis": "vertical"},
      {"op": "grayscale"},
      {"op": "blur", "sigma": 1.5},
      {"op": "sharpen", "sigma": 0.8, "amount": 2},
      {"op": "brightness", "value": 1.2},
      {"op": "contrast", "value": 0.9}
    ],
    "format": "webp", "quality": 90, "lossless": true, "keep_metadata": true
  }],
  "keep_metadata": false,
  "webhook": {"url": "https://example.com/hook?x=1"},
  "priority": "high",
  "sprite": {"columns": 4, "width": 160, "interval": 2.5, "format": "webp", "quality": 70}
}"##;

#[test]
fn good_specs_round_trip() {
    for text in [API_EXAMPLE, EVERY_OP] {
        let spec = Spec::from_json(text).unwrap();
        let again = Spec::from_json(&spec.to_json()).unwrap();
        assert_eq!(spec, again, "{}", spec.to_json());
    }
}

#[test]
fn the_api_example_means_what_it_says() {
    let spec = Spec::from_json(API_EXAMPLE).unwrap();
    assert_eq!(spec.outputs.len(), 2);
    assert_eq!(spec.placeholder, Some(Placeholder::Blurhash));
    assert_eq!(spec.priority, Priority::Normal);
    let thumb = &spec.outputs[0];
    assert_eq!(
        (thumb.name.as_str(), thumb.format, thumb.quality),
        ("thumb", Some(Format::Webp), Some(80))
    );
    let Op::Resize(resize) = &thumb.ops[0] else {
        panic!("resize expected")
    };
    assert_eq!(
        (resize.width, resize.height, resize.fit),
        (Some(256), Some(256), Fit::Cover)
    );
    let Op::Resize(large) = &spec.outputs[1].ops[0] else {
        panic!("resize expected")
    };
    assert_eq!(
        (large.width, large.height, large.fit),
        (Some(1600), None, Fit::Inside)
    );
}

#[test]
fn every_op_parses_with_its_fields() {
    let spec = Spec::from_json(EVERY_OP).unwrap();
    let ops = &spec.outputs[0].ops;
    assert_eq!(ops.len(), 10);
    let Op::Resize(resize) = &ops[0] else {
        panic!()
    };
    assert_eq!(resize.background, Some(Color([0x11, 0x22, 0x33, 0x44])));
    assert_eq!(resize.gravity, Gravity::North);
    let Op::Crop(crop) = &ops[2] else { panic!() };
    assert_eq!(
        crop.anchor,
        CropAnchor::Gravity {
            gravity: Gravity::Smart
        }
    );
    assert!(matches!(ops[5], Op::Grayscale));
    assert_eq!(
        spec.webhook.as_ref().unwrap().url,
        "https://example.com/hook?x=1"
    );
    assert_eq!(spec.priority, Priority::High);
    assert!(spec.keeps_metadata(&spec.outputs[0]));
}

fn refusal(text: &str) -> SpecError {
    match Spec::from_json(text) {
        Ok(spec) => panic!("accepted {text}: {spec:?}"),
        Err(e) => e,
    }
}

/// Every refusal names its field, and the message starts with it.
fn assert_refusals(cases: Vec<(String, &str)>) {
    for (text, field) in cases {
        let e = refusal(&text);
        assert_eq!(e.field, field, "{text} → {e}");
        assert!(!e.message.is_empty());
        if !field.is_empty() {
            assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
        }
    }
}

fn with_output(extra: &str) -> String {
    format!(r#"{{"outputs":[{{"name":"a"{extra}}}]}}"#)
}

fn with_op(op: &str) -> String {
    format!(r#"{{"outputs":[{{"name":"a","ops":[{{"op":"grayscale"}},{op}]}}]}}"#)
}

/// The whole spec and its outputs.
#[test]
fn bad_specs_name_their_field() {
    assert_refusals(vec![
        ("[]".into(), ""),
        ("{".into(), ""),
        ("{}".into(), "outputs"),
        (r#"{"outputs":[]}"#.into(), "outputs"),
        (r#"{"outputs":{}}"#.into(), "outputs"),
        (
            format!(
                r#"{{"outputs":[{}]}}"#,
                vec![r#"{"name":"a"}"#; 17].join(",")
            ),
            "outputs",
        ),
        (
            r#"{"outputs":[{"name":"a"},{"name":"a"}]}"#.into(),
            "outputs[1].name",
        ),
        (r#"{"outputs":[{}]}"#.into(), "outputs[0].name"),
        (
            r#"{"outputs":[{"name":"Thumb"}]}"#.into(),
            "outputs[0].name",
        ),
        (
            r#"{"outputs":[{"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#.into(),
            "outputs[0].name",
        ),
        (
            r#"{"outputs":[{"name":"a/../b"}]}"#.into(),
            "outputs[0].name",
        ),
        (r#"{"outputs":[{"name":"a"}],"colour":1}"#.into(), "colour"),
        (with_output(r#","format":"bmp""#), "outputs[0].format"),
        (with_output(r#","quality":0"#), "outputs[0].quality"),
        (with_output(r#","quality":101"#), "outputs[0].quality"),
        (with_output(r#","quality":"high""#), "outputs[0].quality"),
        (with_output(r#","lossless":true"#), "outputs[0].lossless"),
        (with_output(r#","ops":{}"#), "outputs[0].ops"),
        (with_output(r#","extra":1"#), "outputs[0].extra"),
    ]);
}

/// Ops, by their path in the output.
#[test]
fn bad_ops_name_their_field() {
    assert_refusals(vec![
        (
            with_op(r#"{"op":"resize","width":0}"#),
            "outputs[0].ops[1].width",
        ),
        (
            with_op(r#"{"op":"resize","width":16385}"#),
            "outputs[0].ops[1].width",
        ),
        (
            with_op(r#"{"op":"resize","width":"256"}"#),
            "outputs[0].ops[1].width",
        ),
        (
            with_op(r#"{"op":"resize","height":-1}"#),
            "outputs[0].ops[1].height",
        ),
        (with_op(r#"{"op":"resize"}"#), "outputs[0].ops[1]"),
        (
            with_op(r#"{"op":"resize","width":10,"fit":"stretch"}"#),
            "outputs[0].ops[1].fit",
        ),
        (
            with_op(r#"{"op":"resize","width":10,"filter":"box"}"#),
            "outputs[0].ops[1].filter",
        ),
        (
            with_op(r#"{"op":"resize","width":10,"background":"red"}"#),
            "outputs[0].ops[1].background",
        ),
        (
            with_op(r#"{"op":"resize","width":10,"widht":3}"#),
            "outputs[0].ops[1].widht",
        ),
        (
            with_op(r#"{"op":"crop","width":10}"#),
            "outputs[0].ops[1].height",
        ),
        (
            with_op(r#"{"op":"crop","width":10,"height":10,"x":3}"#),
            "outputs[0].ops[1].y",
        ),
        (
            with_op(r#"{"op":"crop","width":10,"height":10,"x":3,"y":3,"gravity":"north"}"#),
            "outputs[0].ops[1].gravity",
        ),
        (
            with_op(r#"{"op":"rotate","degrees":45}"#),
            "outputs[0].ops[1].degrees",
        ),
        (with_op(r#"{"op":"flip"}"#), "outputs[0].ops[1].axis"),
        (
            with_op(r#"{"op":"flip","axis":"diagonal"}"#),
            "outputs[0].ops[1].axis",
        ),
        (
            with_op(r#"{"op":"grayscale","amount":1}"#),
            "outputs[0].ops[1].amount",
        ),
        (with_op(r#"{"op":"blur"}"#), "outputs[0].ops[1].sigma"),
        (
            with_op(r#"{"op":"blur","sigma":1000}"#),
            "outputs[0].ops[1].sigma",
        ),
        (
            with_op(r#"{"op":"sharpen","amount":-1}"#),
            "outputs[0].ops[1].amount",
        ),
        (
            with_op(r#"{"op":"brightness","value":11}"#),
            "outputs[0].ops[1].value",
        ),
        (with_op(r#"{"op":"contrast"}"#), "outputs[0].ops[1].value"),
        (with_op(r#"{"op":"posterize"}"#), "outputs[0].ops[1].op"),
        (with_op(r#"{"width":3}"#), "outputs[0].ops[1].op"),
        (with_op(r#""resize""#), "outputs[0].ops[1]"),
    ]);
}

/// Placeholder, priority, webhook and sprite.
#[test]
fn bad_top_level_fields_name_their_field() {
    assert_refusals(vec![
        (
            r#"{"outputs":[{"name":"a"}],"placeholder":"thumbhash"}"#.into(),
            "placeholder",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"priority":"urgent"}"#.into(),
            "priority",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"webhook":{"url":"ftp://x"}}"#.into(),
            "webhook.url",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"webhook":{"url":"https://"}}"#.into(),
            "webhook.url",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"webhook":{}}"#.into(),
            "webhook.url",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"sprite":{"columns":0,"width":100}}"#.into(),
            "sprite.columns",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"sprite":{"columns":2}}"#.into(),
            "sprite.width",
        ),
        (
            r#"{"outputs":[{"name":"a"}],"sprite":{"columns":2,"width":100,"format":"gif"}}"#
                .into(),
            "sprite.format",
        ),
        (
            r#"{"outputs":[{"name":"sprite"}],"sprite":{"columns":2,"width":100}}"#.into(),
            "outputs[0].name",
        ),
    ]);
}

#[test]
fn range_errors_say_the_range() {
    let e = refusal(
        r#"{"outputs":[{"name":"a","ops":[{"op":"grayscale"},{"op":"resize","width":0}]}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "outputs[0].ops[1].width: must be an integer in 1..=16384"
    );
    let e =
        refusal(r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":10,"fit":"stretch"}]}]}"#);
    assert!(e.message.contains("cover"), "{e}");
}

#[test]
fn shorthand_makes_one_default_output() {
    let spec = Spec::from_shorthand([
        ("w", "256"),
        ("h", "256"),
        ("fit", "cover"),
        ("format", "webp"),
        ("q", "80"),
    ])
    .unwrap();
    let expected = Spec::from_json(
        r#"{"outputs":[{"name":"default","ops":[{"op":"resize","width":256,"height":256,"fit":"cover"}],"format":"webp","quality":80}]}"#,
    )
    .unwrap();
    assert_eq!(spec, expected);
    assert_eq!(spec.outputs[0].name, SHORTHAND_OUTPUT);

    let plain = Spec::from_shorthand([("format", "png")]).unwrap();
    assert!(plain.outputs[0].ops.is_empty());
    let width_only = Spec::from_shorthand([
        ("w", "100"),
        ("placeholder", "blurhash"),
        ("priority", "low"),
    ])
    .unwrap();
    assert_eq!(width_only.placeholder, Some(Placeholder::Blurhash));
    assert_eq!(width_only.priority, Priority::Low);
}

#[test]
fn shorthand_errors_name_the_parameter() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("w", "abc")], "w"),
        (&[("w", "0")], "w"),
        (&[("h", "99999")], "h"),
        (&[("fit", "cover")], "w"),
        (&[("w", "10"), ("fit", "squash")], "fit"),
        (&[("q", "0")], "q"),
        (&[("format", "tiff")], "format"),
        (&[("w", "10"), ("enlarge", "maybe")], "enlarge"),
        (&[("w", "1"), ("w", "2")], "w"),
        (&[("width", "10")], "width"),
    ];
    for (pairs, field) in cases {
        let e = Spec::from_shorthand(pairs.iter().copied()).unwrap_err();
        assert_eq!(e.field, *field, "{pairs:?} → {e}");
    }
    assert!(Spec::is_shorthand_key("w") && !Spec::is_shorthand_key("spec"));
}
