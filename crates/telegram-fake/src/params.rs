//! Reading a Bot API request's parameters, whichever way the client sent them: a JSON body,
//! multipart/form-data (with `attach://` uploads), a urlencoded form or the query string.

use crate::error::ApiFailure;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A file part of a multipart request.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub(crate) bytes: Bytes,
    pub(crate) file_name: Option<String>,
    pub(crate) content_type: Option<String>,
}

/// A file parameter: an uploaded part, or a string that is a `file_id` or a URL.
#[derive(Debug, Clone)]
pub(crate) enum FileRef {
    Upload(Upload),
    Text(String),
}

/// The parameters of one request.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: Map<String, Value>,
    uploads: HashMap<String, Upload>,
}

impl Params {
    /// Reads every parameter; uploads above `max_upload` bytes in total answer `413`.
    pub(crate) async fn read(request: Request, max_upload: u64) -> Result<Params, ApiFailure> {
        let mut params = Params::default();
        if let Some(query) = request.uri().query() {
            for (key, value) in form_pairs(query) {
                params.values.insert(key, Value::String(value));
            }
        }
        let content_type =
            request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            params.read_multipart(request, max_upload).await?;
        } else {
            let limit = usize::try_from(max_upload).unwrap_or(usize::MAX);
            let body = axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| ApiFailure::too_large())?;
            if content_type.starts_with("application/x-www-form-urlencoded") {
                for (key, value) in form_pairs(&String::from_utf8_lossy(&body)) {
                    params.values.insert(key, Value::String(value));
                }
            } else if !body.is_empty() {
                // Telegram ignores a body it cannot read as JSON; the missing parameters then
                // produce the usual "... is empty" errors.
                if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) {
                    params.values.extend(object);
                }
            }
        }
        Ok(params)
    }

    async fn read_multipart(&mut self, request: Request, max_upload: u64) -> Result<(), ApiFailure> {
        let bad = |_| ApiFailure::bad_request("can't parse multipart/form-data body");
        let mut multipart =
            Multipart::from_request(request, &()).await.map_err(|_| ApiFailure::bad_request("bad request"))?;
        let mut total: u64 = 0;
        while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let mut data = BytesMut::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                total += chunk.len() as u64;
                if total > max_upload {
                    return Err(ApiFailure::too_large());
                }
                data.extend_from_slice(&chunk);
            }
            if file_name.is_some() {
                self.uploads.insert(name, Upload { bytes: data.freeze(), file_name, content_type });
            } else {
                let text = String::from_utf8_lossy(&data).into_owned();
                // Keep binary-looking text parts reachable as uploads too (clients that attach
                // files without a file name).
                self.uploads.insert(
                    name.clone(),
                    Upload { bytes: data.freeze(), file_name: None, content_type: content_type.clone() },
                );
                self.values.insert(name, Value::String(text));
            }
        }
        Ok(())
    }

    /// A parameter as text (numbers and booleans in their JSON spelling).
    pub(crate) fn str(&self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// An integer parameter; a value that is not one answers `400`.
    pub(crate) fn i64(&self, key: &str) -> Result<Option<i64>, ApiFailure> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(key)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(key)),
            Some(_) => Err(invalid(key)),
        }
    }

    /// A boolean parameter (`true`, `"true"`, `1`, `"1"`, `"True"`).
    pub(crate) fn bool(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
            _ => false,
        }
    }

    /// A JSON-serialized parameter (an object or array, or a string holding one).
    pub(crate) fn json(&self, key: &str) -> Result<Option<Value>, ApiFailure> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| invalid(key)),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    /// A file parameter: `attach://name` resolves to that part; an uploaded part named `key`
    /// counts too; any other string is a `file_id` or a URL.
    pub(crate) fn file(&self, key: &str) -> Option<FileRef> {
        if let Some(upload) = self.uploads.get(key).filter(|u| u.file_name.is_some()) {
            return Some(FileRef::Upload(upload.clone()));
        }
        self.resolve(&self.str(key)?)
    }

    /// Resolves a file string found inside a JSON parameter (`media` of an album).
    pub(crate) fn resolve(&self, value: &str) -> Option<FileRef> {
        match value.strip_prefix("attach://") {
            Some(name) => self.uploads.get(name).cloned().map(FileRef::Upload),
            None if value.is_empty() => None,
            None => Some(FileRef::Text(value.to_owned())),
        }
    }

    /// Every parameter, with uploads summarised, for the call record.
    pub(crate) fn summary(&self) -> Value {
        let mut values = self.values.clone();
        for (name, upload) in &self.uploads {
            if upload.file_name.is_some() || self.is_attached(name) {
                values.insert(name.clone(), serde_json::json!({"upload_bytes": upload.bytes.len()}));
            }
        }
        Value::Object(values)
    }

    fn is_attached(&self, name: &str) -> bool {
        let target = format!("attach://{name}");
        self.values.values().any(|v| v.as_str().is_some_and(|s| s == target || s.contains(&target)))
    }
}

fn invalid(key: &str) -> ApiFailure {
    ApiFailure::bad_request(format!("invalid {key} specified"))
}

fn form_pairs(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes stay as they are.
pub(crate) fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_pairs("a=1&b=x+y%21&c"),
            vec![("a".into(), "1".into()), ("b".into(), "x y!".into()), ("c".into(), "".into())]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn typed_accessors() {
        let mut params = Params::default();
        params.values.insert("chat_id".into(), Value::String("42".into()));
        params.values.insert("bad".into(), Value::String("x".into()));
        params.values.insert("markup".into(), Value::String("{\"a\":1}".into()));
        assert_eq!(params.i64("chat_id").unwrap(), Some(42));
        assert!(params.i64("bad").is_err());
        assert_eq!(params.json("markup").unwrap(), Some(serde_json::json!({"a": 1})));
        assert!(matches!(params.file("bad"), Some(FileRef::Text(s)) if s == "x"));
    }
}
