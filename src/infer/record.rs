//! [`PredictionRecord`]: the verdict on one image as it leaves cras, one JSON object: a line of
//! `cras predict`, an element of `predictions` in `POST /v1/predict`'s answer. The OpenAPI
//! schema of the service's record ([`PredictionRecord::json_schema`]) is built from the same
//! field list ([`FIELDS`]) that this module's tests check against the serialised type.
//!
//! The JSON form, fixed (clients parse it):
//! - keys in alphabetical order (the field order below);
//! - `score`, `class_similarity` and `threshold` are the f32 values written as the f64 they
//!   widen to (`0.6115138530731201`, not `0.61151385`); a non-finite score or similarity is
//!   `null` (a NaN score is decided a defect, see [`super::decide`]);
//! - `threshold` and `is_anomalous` are always present, `null` when no threshold is in force;
//! - `ms` is rounded to the microsecond;
//! - the image is named by `path` (`cras predict`; plus `path_bytes`, the path's raw bytes,
//!   when it is not UTF-8) or `name` (the service: multipart file or part name, `body` for a raw
//!   body); the anomaly map by `heatmap` (`cras predict --heatmaps`: the PNG written) or `map`
//!   (the service's `map=png`: a base64 PNG). Absent keys are left out, never `null`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{decide, Decision, Prediction};

/// The verdict on one image (see the module documentation for the JSON form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Class used: matched globally, or the one stated.
    pub class: String,
    /// Cosine similarity with the matched class's center map.
    #[serde(with = "widened")]
    pub class_similarity: f32,
    /// The decision at `threshold` ([`super::decide`]).
    #[serde(with = "decision_word")]
    pub decision: Decision,
    /// `cras predict --heatmaps`: the PNG file of the image's anomaly map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<String>,
    /// `score >= threshold`; None without a threshold.
    pub is_anomalous: Option<bool>,
    /// The service's `map=png`: the anomaly map as a base64 grayscale PNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// Milliseconds (see [`FIELDS`] for what each surface times), rounded to microseconds.
    pub ms: f64,
    /// The service: multipart file name (else part name), `body` for a raw body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `cras predict`: the image file (lossy when not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `cras predict`: the path's raw bytes when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    /// Image anomaly score (the maximum patch score).
    #[serde(with = "widened")]
    pub score: f32,
    /// The threshold in force for the class; None without one.
    #[serde(with = "widened_option")]
    pub threshold: Option<f32>,
}

impl PredictionRecord {
    /// The record of prediction `p` by a model of `classes` ([`crate::model::file::ModelMeta::classes`]), decided
    /// at `threshold`, timed at `ms` milliseconds. The image's name and map fields are left
    /// empty.
    pub fn decided(classes: &[String], p: &Prediction, threshold: Option<f32>, ms: f64) -> Self {
        let decision = decide(p.score, threshold);
        PredictionRecord {
            class: classes.get(p.class).cloned().unwrap_or_default(),
            class_similarity: p.class_similarity,
            decision,
            heatmap: None,
            is_anomalous: decision.is_anomalous(),
            map: None,
            ms: (ms * 1000.0).round() / 1000.0,
            name: None,
            path: None,
            path_bytes: None,
            score: p.score,
            threshold,
        }
    }

    /// The OpenAPI 3.0 schema (an object schema) of the records `surface` writes.
    pub fn json_schema(surface: Surface) -> Value {
        let fields = FIELDS.iter().filter(|f| f.on(surface));
        let required: Vec<&str> = fields.clone().filter(|f| f.always).map(|f| f.key).collect();
        let properties: Map<String, Value> = fields
            .map(|f| (f.key.to_string(), f.schema(surface)))
            .collect();
        json!({"type": "object", "required": required, "properties": properties})
    }
}

/// Where a record is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `cras predict`'s JSON lines.
    Cli,
    /// `POST /v1/predict`'s `predictions`.
    Service,
}

/// One key of the record as documented: its JSON type and meaning.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub key: &'static str,
    /// OpenAPI type: `string`, `number`, `boolean` or `array` (of bytes).
    pub kind: &'static str,
    /// Written as `null` when it does not apply.
    pub nullable: bool,
    /// Present in every record of its surfaces (else only when it applies).
    pub always: bool,
    /// Written by `cras predict` / by the service.
    pub cli: bool,
    pub service: bool,
    /// What it means (the service's wording when `service_description` is empty).
    pub description: &'static str,
    /// The service's meaning when it differs.
    pub service_description: &'static str,
}

impl Field {
    /// Whether `surface` writes this key.
    pub fn on(&self, surface: Surface) -> bool {
        match surface {
            Surface::Cli => self.cli,
            Surface::Service => self.service,
        }
    }

    fn schema(&self, surface: Surface) -> Value {
        let description = match surface {
            Surface::Service if !self.service_description.is_empty() => self.service_description,
            _ => self.description,
        };
        let mut s = json!({"type": self.kind, "description": description});
        if self.nullable {
            s["nullable"] = true.into();
        }
        match self.key {
            "decision" => s["enum"] = json!(DECISIONS.map(|d| d.as_str())),
            "map" => s["format"] = "byte".into(),
            "path_bytes" => s["items"] = json!({"type": "integer", "minimum": 0, "maximum": 255}),
            _ => {}
        }
        s
    }
}

/// Every decision, in the order the schema lists them.
const DECISIONS: [Decision; 3] = [Decision::Defect, Decision::Ok, Decision::NoThreshold];

/// The record's keys, in JSON order.
pub const FIELDS: [Field; 12] = [
    Field {
        service_description: "Class used: matched globally, or the one stated in ?class.",
        ..Field::both(
            "class",
            "string",
            false,
            "Class used: matched globally, or the one stated with --class.",
        )
    },
    Field::both(
        "class_similarity",
        "number",
        false,
        "Cosine similarity with the matched class's center map.",
    ),
    Field::both("decision", "string", false, "defect, ok or no threshold."),
    Field {
        always: false,
        service: false,
        ..Field::both(
            "heatmap",
            "string",
            false,
            "With --heatmaps: the PNG file written.",
        )
    },
    Field::both(
        "is_anomalous",
        "boolean",
        true,
        "score >= threshold; null without a threshold.",
    ),
    Field {
        always: false,
        cli: false,
        ..Field::both(
            "map",
            "string",
            false,
            "With ?map=png: the anomaly map as a base64 grayscale PNG of the model input size \
             (0..1 mapped to 0..255).",
        )
    },
    Field {
        service_description: "Server time for the whole request, in milliseconds.",
        ..Field::both(
            "ms",
            "number",
            false,
            "Milliseconds per image: its batch's decoding and scoring time over its images.",
        )
    },
    Field {
        cli: false,
        ..Field::both(
            "name",
            "string",
            false,
            "Multipart file name or part name; 'body' for a raw body.",
        )
    },
    Field {
        service: false,
        ..Field::both(
            "path",
            "string",
            false,
            "The image file (U+FFFD replacing what is not UTF-8).",
        )
    },
    Field {
        always: false,
        service: false,
        ..Field::both(
            "path_bytes",
            "array",
            false,
            "The path's raw bytes, when it is not UTF-8.",
        )
    },
    Field {
        service_description: "Image anomaly score (max patch score), identical to `cras predict`.",
        ..Field::both(
            "score",
            "number",
            true,
            "Image anomaly score (max patch score); null when not finite.",
        )
    },
    Field {
        service_description: "?threshold, else the saved threshold set, else the model's stored \
                              threshold for the class.",
        ..Field::both(
            "threshold",
            "number",
            true,
            "--threshold, else the model's stored threshold for the class (or the one for \
             --false-alarm-rate).",
        )
    },
];

impl Field {
    /// A key written by both surfaces in every record.
    const fn both(
        key: &'static str,
        kind: &'static str,
        nullable: bool,
        description: &'static str,
    ) -> Self {
        Field {
            key,
            kind,
            nullable,
            always: true,
            cli: true,
            service: true,
            description,
            service_description: "",
        }
    }
}

/// An f32 written as the f64 it widens to (`null` when not finite; read back from a number or
/// `null`, which becomes NaN).
mod widened {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map_or(f32::NAN, |v| v as f32))
    }
}

/// An optional f32 written as the f64 it widens to, `null` when absent.
mod widened_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_f64(f64::from(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(|v| v as f32))
    }
}

/// A [`Decision`] as its word ([`Decision::as_str`]).
mod decision_word {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use super::{Decision, DECISIONS};

    pub fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        let word = String::deserialize(d)?;
        DECISIONS
            .into_iter()
            .find(|d| d.as_str() == word)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "unknown decision '{word}': expected defect, ok or no threshold"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PredictionRecord {
        PredictionRecord {
            class: "ring".into(),
            class_similarity: 0.97663075,
            decision: Decision::Ok,
            heatmap: None,
            is_anomalous: Some(false),
            map: None,
            ms: 54.067,
            name: None,
            path: None,
            path_bytes: None,
            score: 0.61151385,
            threshold: Some(0.6377319),
        }
    }

    /// The record as `surface` fills it: every key it can write set (`full`), or only those
    /// it always writes.
    fn as_written(surface: Surface, full: bool) -> PredictionRecord {
        let mut r = record();
        match surface {
            Surface::Cli => {
                r.path = Some("a.png".into());
                if full {
                    r.heatmap = Some("maps/a_map.png".into());
                    r.path_bytes = Some(vec![97, 0xe9]);
                }
            }
            Surface::Service => {
                r.name = Some("body".into());
                if full {
                    r.map = Some("iVBORw0KGgo=".into());
                }
            }
        }
        r
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_schema_lists_exactly_the_keys_each_surface_writes() {
        for surface in [Surface::Cli, Surface::Service] {
            let schema = PredictionRecord::json_schema(surface);
            let full = serde_json::to_value(as_written(surface, true)).unwrap();
            assert_eq!(keys(&full), keys(&schema["properties"]), "{surface:?}");
            let least = serde_json::to_value(as_written(surface, false)).unwrap();
            let required: Vec<String> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            assert_eq!(keys(&least), required, "{surface:?}");
        }
    }

    #[test]
    fn every_value_has_its_schema_type() {
        for surface in [Surface::Cli, Surface::Service] {
            let schema = PredictionRecord::json_schema(surface);
            let mut nulls = as_written(surface, true);
            nulls.threshold = None;
            nulls.is_anomalous = None;
            nulls.decision = Decision::NoThreshold;
            nulls.score = f32::NAN;
            for r in [as_written(surface, true), nulls] {
                let v = serde_json::to_value(&r).unwrap();
                for (key, value) in v.as_object().unwrap() {
                    let s = &schema["properties"][key];
                    let kind = match value {
                        Value::Null => {
                            assert_eq!(s["nullable"], true, "{key} is null");
                            continue;
                        }
                        Value::Bool(_) => "boolean",
                        Value::Number(_) => "number",
                        Value::String(_) => "string",
                        Value::Array(_) => "array",
                        Value::Object(_) => "object",
                    };
                    assert_eq!(s["type"], kind, "{key}: {value}");
                    if let Some(words) = s["enum"].as_array() {
                        assert!(words.contains(value), "{key}: {value}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_json_form_is_fixed() {
        let mut r = as_written(Surface::Cli, false);
        r.path_bytes = Some(vec![1, 255]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            "{\"class\":\"ring\",\"class_similarity\":0.9766307473182678,\"decision\":\"ok\",\
             \"is_anomalous\":false,\"ms\":54.067,\"path\":\"a.png\",\"path_bytes\":[1,255],\
             \"score\":0.6115138530731201,\"threshold\":0.6377319097518921}"
        );
        // The same text as the generic JSON value the outputs were built from before.
        let value = json!({
            "class": "ring", "class_similarity": r.class_similarity, "decision": "ok",
            "is_anomalous": false, "ms": 54.067, "path": "a.png", "path_bytes": [1, 255],
            "score": r.score, "threshold": r.threshold,
        });
        assert_eq!(serde_json::to_string(&r).unwrap(), value.to_string());
        let mut nan = record();
        nan.score = f32::NAN;
        nan.threshold = None;
        let text = serde_json::to_string(&nan).unwrap();
        assert!(text.contains("\"score\":null"), "{text}");
        assert!(text.contains("\"threshold\":null"), "{text}");
    }

    #[test]
    fn records_read_back_as_written() {
        let r = as_written(Surface::Cli, true);
        let back: PredictionRecord =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let err = serde_json::from_str::<PredictionRecord>(
            &serde_json::to_string(&r)
                .unwrap()
                .replace("\"ok\"", "\"fine\""),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown decision 'fine'"), "{err}");
    }

    #[test]
    fn decided_applies_the_one_rule() {
        let classes = ["a".to_string(), "b".to_string()];
        let p = Prediction {
            class: 1,
            matched: 1,
            class_similarity: 0.5,
            score: 0.7,
            patch_scores: vec![],
            map: None,
        };
        let r = PredictionRecord::decided(&classes, &p, Some(0.6), 1.23456);
        assert_eq!((r.class.as_str(), r.decision), ("b", Decision::Defect));
        assert_eq!((r.is_anomalous, r.ms), (Some(true), 1.235));
        let r = PredictionRecord::decided(&classes, &p, None, 0.0);
        assert_eq!((r.decision, r.is_anomalous), (Decision::NoThreshold, None));
    }
}
