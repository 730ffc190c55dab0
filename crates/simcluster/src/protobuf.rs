//! Protobuf request bodies, as kubectl's typed commands (`kubectl create namespace|deployment|configmap|...`) send
//! them: the `k8s\0` magic, then a `runtime.Unknown` envelope (apiVersion and kind, and the object's own message as
//! bytes). The object is decoded into the JSON a client would have sent, from a schema generated from the Kubernetes
//! protobuf definitions (`data/protobuf-schema.txt`, `scripts/gen-protobuf-schema.py`). Answers stay JSON.
//!
//! The Go encoder writes every non-pointer field, so a zero value (`""`, `0`, `false`) on the wire usually means
//! "unset" and is dropped, as the JSON encoder's `omitempty` would; for the pointer fields where zero is a choice
//! (`replicas: 0`, `runAsUser: 0`, `automountServiceAccountToken: false`) it is kept.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
const SCHEMA: &str = include_str!("../data/protobuf-schema.txt");
/// Go's zero `time.Time` in Unix seconds: `metadata.creationTimestamp` of an object not yet created.
const ZERO_TIME: i64 = -62_135_596_800;

/// Pointer fields whose zero value is a choice, not an absence.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "runAsNonRoot",
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "shareProcessNamespace",
    "hostUsers",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "completions",
    "parallelism",
    "ttlSecondsAfterFinished",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "suspend",
    "manualSelector",
    "priority",
    "defaultMode",
    "mode",
    "optional",
    "storageClassName",
    "expirationSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    "allocateLoadBalancerNodePorts",
    "immutable",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the body is not a Kubernetes protobuf message (no k8s\\0 prefix)")]
    NoMagic,
    #[error("the protobuf body ends in the middle of {0}")]
    Truncated(&'static str),
    #[error("simcluster does not read {kind} ({api_version}) from protobuf; send it as JSON")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf field {tag} of {message} is not known to simcluster")]
    UnknownField { message: String, tag: u64 },
    #[error(
        "protobuf field {field} of {message} has wire type {wire}, not the type it is declared with"
    )]
    WireType {
        message: String,
        field: String,
        wire: u64,
    },
}

#[derive(Debug, Clone)]
enum Ty {
    Scalar(&'static str),
    Message(&'static str),
    Map(Box<Ty>),
}

#[derive(Debug)]
struct Field {
    json: &'static str,
    ty: Ty,
    repeated: bool,
}

struct Schema {
    messages: HashMap<&'static str, HashMap<u64, Field>>,
    roots: HashMap<(&'static str, &'static str), &'static str>,
}

fn parse_ty(s: &'static str) -> Ty {
    if let Some(m) = s.strip_prefix("m:") {
        Ty::Message(m)
    } else if let Some(v) = s.strip_prefix("map:") {
        Ty::Map(Box::new(parse_ty(v)))
    } else {
        Ty::Scalar(s)
    }
}

fn schema() -> &'static Schema {
    static SCHEMA_CELL: OnceLock<Schema> = OnceLock::new();
    SCHEMA_CELL.get_or_init(|| {
        let mut messages: HashMap<&str, HashMap<u64, Field>> = HashMap::new();
        let mut roots = HashMap::new();
        let mut current = "";
        for line in SCHEMA.lines().filter(|l| !l.starts_with('#')) {
            let parts: Vec<&'static str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => {
                    current = name;
                    messages.entry(name).or_default();
                }
                ["R", api_version, kind, message] => {
                    roots.insert((*api_version, *kind), *message);
                }
                [tag, json, ty] => {
                    let (repeated, ty) = match ty.strip_prefix("[]") {
                        Some(t) => (true, t),
                        None => (false, *ty),
                    };
                    if let (Ok(tag), Some(fields)) = (tag.parse(), messages.get_mut(current)) {
                        fields.insert(
                            tag,
                            Field {
                                json,
                                ty: parse_ty(ty),
                                repeated,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        Schema { messages, roots }
    })
}

/// Whether a body of this `Content-Type` is protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().map(str::trim) == Some(MEDIA_TYPE)
}

/// The object a protobuf request body carries, as JSON.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(DecodeError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader(envelope);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 2) => {
                let mut meta = Reader(r.bytes()?);
                while let Some((t, w)) = meta.key()? {
                    match (t, w) {
                        (1, 2) => api_version = meta.string()?,
                        (2, 2) => kind = meta.string()?,
                        _ => meta.skip(w)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            _ => r.skip(wire)?,
        }
    }
    let root = schema()
        .roots
        .get(&(api_version.as_str(), kind.as_str()))
        .ok_or_else(|| DecodeError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let mut obj = message(raw, root)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (b, rest) = self
                .0
                .split_first()
                .ok_or(DecodeError::Truncated("a varint"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated("a varint"))
    }

    /// The next field's (number, wire type), or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u64)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, k & 7)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated("a field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| DecodeError::Truncated("a field"))?)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn skip(&mut self, wire: u64) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(DecodeError::Truncated("a field of an unknown wire type")),
        }
    }
}

fn zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

/// One message, by its schema name.
fn message(buf: &[u8], name: &'static str) -> Result<Value, DecodeError> {
    if let Some(v) = special(buf, name)? {
        return Ok(v);
    }
    let fields = schema()
        .messages
        .get(name)
        .ok_or_else(|| DecodeError::UnknownField {
            message: name.to_string(),
            tag: 0,
        })?;
    let mut out = Map::new();
    let mut r = Reader(buf);
    while let Some((tag, wire)) = r.key()? {
        let f = fields.get(&tag).ok_or_else(|| DecodeError::UnknownField {
            message: name.to_string(),
            tag,
        })?;
        let wrong = || DecodeError::WireType {
            message: name.to_string(),
            field: f.json.to_string(),
            wire,
        };
        match &f.ty {
            Ty::Map(value_ty) => {
                let (k, v) = map_entry(r.bytes()?, value_ty, name)?;
                let entry = out.entry(f.json).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
            }
            // A packed repeated number: several values in one length-delimited field.
            Ty::Scalar(s) if f.repeated && wire == 2 && *s != "string" && *s != "bytes" => {
                let mut packed = Reader(r.bytes()?);
                while !packed.0.is_empty() {
                    let v = scalar(&mut packed, s, 0).map_err(|_| wrong())?;
                    push(&mut out, f.json, v);
                }
            }
            ty => {
                let v = match ty {
                    Ty::Message(m) if wire == 2 => message(r.bytes()?, m)?,
                    Ty::Scalar(s) => scalar(&mut r, s, wire).map_err(|e| match e {
                        DecodeError::WireType { .. } => wrong(),
                        other => other,
                    })?,
                    _ => return Err(wrong()),
                };
                if f.json == "-" {
                    // An embedded struct: its fields are the parent's.
                    if let Value::Object(m) = v {
                        out.extend(m);
                    }
                } else if f.repeated {
                    push(&mut out, f.json, v);
                } else {
                    let unset = v.is_null()
                        || (matches!(ty, Ty::Scalar(_))
                            && zero(&v)
                            && !KEEP_ZERO.contains(&f.json));
                    if unset {
                        continue;
                    }
                    out.insert(f.json.to_string(), v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, key: &str, v: Value) {
    let list = out.entry(key).or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

fn map_entry(
    buf: &[u8],
    value_ty: &Ty,
    name: &'static str,
) -> Result<(String, Value), DecodeError> {
    let (mut k, mut v) = (String::new(), Value::Null);
    let mut r = Reader(buf);
    while let Some((tag, wire)) = r.key()? {
        match (tag, value_ty) {
            (1, _) => k = r.string()?,
            (2, Ty::Message(m)) => v = message(r.bytes()?, m)?,
            (2, Ty::Scalar(s)) => v = scalar(&mut r, s, wire)?,
            _ => {
                return Err(DecodeError::UnknownField {
                    message: format!("{name} map entry"),
                    tag,
                });
            }
        }
    }
    if v.is_null() {
        v = match value_ty {
            Ty::Scalar("string" | "bytes") => json!(""),
            _ => json!({}),
        };
    }
    Ok((k, v))
}

fn scalar(r: &mut Reader<'_>, ty: &str, wire: u64) -> Result<Value, DecodeError> {
    let mismatch = || DecodeError::WireType {
        message: String::new(),
        field: String::new(),
        wire,
    };
    Ok(match ty {
        "string" if wire == 2 => json!(r.string()?),
        "bytes" if wire == 2 => json!(base64(r.bytes()?)),
        // int32 values are sign-extended to 64 bits on the wire.
        "int32" if wire == 0 => json!(r.varint()? as i64 as i32),
        "int64" if wire == 0 => json!(r.varint()? as i64),
        "bool" if wire == 0 => json!(r.varint()? != 0),
        "double" if wire == 1 => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            json!(f64::from_le_bytes(a))
        }
        _ => return Err(mismatch()),
    })
}

/// The messages the API does not show as objects: timestamps, quantities, int-or-string, raw JSON.
fn special(buf: &[u8], name: &str) -> Result<Option<Value>, DecodeError> {
    let short = name.rsplit('.').next().unwrap_or(name);
    if !matches!(
        short,
        "Time"
            | "MicroTime"
            | "Quantity"
            | "IntOrString"
            | "RawExtension"
            | "FieldsV1"
            | "Duration"
    ) || !name.starts_with("apimachinery.")
    {
        return Ok(None);
    }
    if buf.is_empty() && matches!(short, "Time" | "MicroTime") {
        // Go writes a zero time as an empty message.
        return Ok(Some(Value::Null));
    }
    let mut r = Reader(buf);
    let (mut ints, mut text, mut raw) = ([0i64; 3], None, None);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1..=3, 0) => ints[(tag - 1) as usize] = r.varint()? as i64,
            (_, 2) if short == "Quantity" || short == "IntOrString" => text = Some(r.string()?),
            (_, 2) => raw = Some(r.bytes()?.to_vec()),
            _ => r.skip(wire)?,
        }
    }
    Ok(Some(match short {
        "Time" | "MicroTime" => {
            let [seconds, nanos, _] = ints;
            if seconds == ZERO_TIME && nanos == 0 {
                Value::Null
            } else {
                let t = chrono::DateTime::from_timestamp(seconds, nanos as u32).unwrap_or_default();
                let precision = if short == "Time" {
                    chrono::SecondsFormat::Secs
                } else {
                    chrono::SecondsFormat::Micros
                };
                json!(t.to_rfc3339_opts(precision, true))
            }
        }
        "Duration" => json!(format!("{}s", ints[0] as f64 / 1e9)),
        "Quantity" => json!(text.unwrap_or_default()),
        "IntOrString" if ints[0] == 1 => json!(text.unwrap_or_default()),
        "IntOrString" => json!(ints[1] as i32),
        _ => raw
            .map(|b| serde_json::from_slice(&b).unwrap_or_else(|_| json!(base64(&b))))
            .unwrap_or(Value::Null),
    }))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_knows_every_kind_served() {
        for r in crate::resources::RESOURCES.iter().filter(|r| !r.custom()) {
            assert!(
                schema()
                    .roots
                    .contains_key(&(r.api_version().as_str(), r.kind)),
                "{} {}",
                r.api_version(),
                r.kind
            );
        }
    }

    #[test]
    fn base64_like_the_api() {
        assert_eq!(base64(b"password"), "cGFzc3dvcmQ=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert_eq!(decode(b"{}"), Err(DecodeError::NoMagic));
        assert_eq!(
            decode(b"k8s\0\x0a"),
            Err(DecodeError::Truncated("a varint"))
        );
        // A TypeMeta of a kind simcluster does not read.
        let body = [
            b"k8s\0".as_slice(),
            &[0x0a, 0x0c, 0x0a, 0x02, b'v', b'1', 0x12, 0x06],
            b"Widget",
        ]
        .concat();
        assert_eq!(
            decode(&body),
            Err(DecodeError::UnknownKind {
                api_version: "v1".into(),
                kind: "Widget".into()
            })
        );
    }
}
