//! The REST API of reflexion-api, as the plugin uses it: JSON in and out, the bearer token on every request, the
//! API's own error (`{"error": {"code", "message"}}`) as the one line a person reads.

use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach reflexion-api at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("reflexion-api answered {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("reflexion-api answered {status} with a body that is not JSON")]
    NotJson { status: u16 },
    #[error("--api-url {0:?} is not an http(s) URL")]
    BadUrl(String),
}

pub struct Api {
    base: reqwest::Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ApiError> {
        let base = reqwest::Url::parse(base.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ApiError::BadUrl(base.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiError::Unreachable {
                url: base.to_string(),
                why: e.to_string(),
            })?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.trim().is_empty()),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.send(
            self.request(reqwest::Method::GET, path)
                .timeout(Duration::from_secs(30)),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(
            self.request(reqwest::Method::POST, path)
                .timeout(Duration::from_secs(30))
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.send(
            self.request(reqwest::Method::DELETE, path)
                .timeout(Duration::from_secs(30)),
        )
        .await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| ApiError::NotJson { status })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(ApiError::Refused {
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string(),
            message: one_line(body["error"]["message"].as_str().unwrap_or("no message")),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        ApiError::Unreachable {
            url: self.base.to_string(),
            why,
        }
    }

    /// The live feed (`GET /api/v1/events`): each transition's JSON, as it happens, until the stream ends.
    pub async fn follow(
        &self,
        mut each: impl AsyncFnMut(Value) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut resp = self
            .request(reqwest::Method::GET, "/api/v1/events")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(ApiError::Refused {
                status: resp.status().as_u16(),
                code: "feed".into(),
                message: "the live feed was refused".into(),
            });
        }
        let mut buf = String::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(&e))? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(data) = sse_data(&frame) {
                    each(data).await?;
                }
            }
            // A feed that never ends a frame is not one: do not hold it all.
            if buf.len() > 1 << 20 {
                buf.clear();
            }
        }
        Ok(())
    }
}

/// The JSON of a `transition` frame of a server-sent event stream; None for comments, keep-alives and others.
pub fn sse_data(frame: &str) -> Option<Value> {
    let mut event = "message";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (event == "transition")
        .then(|| serde_json::from_str(&data).ok())
        .flatten()
}

/// Text from the network as one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_transition_frames_only() {
        let cases = [
            (
                "id: 7\nevent: transition\ndata: {\"id\":7,\"state\":\"resolved\"}\n\n",
                Some(7),
            ),
            ("event: transition\ndata:{\"id\":8}\n\n", Some(8)),
            (": keep-alive\n\n", None),
            ("event: other\ndata: {\"id\":9}\n\n", None),
            ("event: transition\ndata: not json\n\n", None),
        ];
        for (frame, want) in cases {
            assert_eq!(
                sse_data(frame).map(|v| v["id"].as_i64().unwrap()),
                want,
                "{frame}"
            );
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(Api::new("http://127.0.0.1:8000/", None).is_ok());
        assert!(matches!(
            Api::new("ftp://x", None),
            Err(ApiError::BadUrl(_))
        ));
        assert!(matches!(Api::new("::", None), Err(ApiError::BadUrl(_))));
    }
}
