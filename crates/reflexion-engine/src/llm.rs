//! The LLM client: one chat completion per planning step against any OpenAI-compatible endpoint (OpenAI, Ollama,
//! vLLM, llama.cpp), with a bounded answer, a timeout, and token accounting. What the answer may do is decided
//! elsewhere: [`reflexion_core::llm::parse_answer`], validation, scope, policy and the dry run.

use crate::db::LlmCallRecord;
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, CreateChatCompletionRequestArgs, ResponseFormat,
    ResponseFormatJsonSchema,
};
use reflexion_core::llm::MAX_ANSWER_BYTES;
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Clone)]
pub struct LlmConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub timeout: Duration,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Ask for `response_format: json_schema` (servers that do not support it may need this off).
    pub json_schema: bool,
    /// Replace cluster names by placeholders in prompts.
    pub redact: bool,
    pub incident_token_budget: u64,
    pub daily_token_budget: u64,
    /// What the prompt may recall (for the Reflexion experiment; `full` in production).
    pub memory: LlmMemory,
}

/// What the LLM planner may recall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmMemory {
    /// Nothing: no failed attempts, no reflections, no lessons, no learned LLM strategies.
    None,
    /// This incident's failed attempts and their reflections (the paper's loop).
    Incident,
    /// Plus lessons from earlier incidents and learned LLM strategies.
    Full,
}

// By hand, so the API key can never reach a log line.
impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("json_schema", &self.json_schema)
            .field("redact", &self.redact)
            .finish_non_exhaustive()
    }
}

/// The result of one call: the answer text or why there is none, with what it cost.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: Result<String, String>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency: Duration,
}

impl Completion {
    /// The row that records this call: what was asked, what came back, and what became of it.
    pub fn record(
        &self,
        trial: u32,
        model: &str,
        prompt: String,
        outcome: String,
    ) -> LlmCallRecord {
        LlmCallRecord {
            trial: i64::from(trial),
            model: model.to_string(),
            prompt,
            response: self.text.as_ref().ok().cloned(),
            prompt_tokens: i64::from(self.prompt_tokens),
            completion_tokens: i64::from(self.completion_tokens),
            latency_ms: self.latency.as_millis() as i64,
            outcome,
        }
    }
}

#[derive(Clone)]
pub struct Llm {
    client: Client<OpenAIConfig>,
    pub config: LlmConfig,
}

impl Llm {
    pub fn new(config: LlmConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        Ok(Self {
            client: Client::with_config(openai).with_http_client(http),
            config,
        })
    }

    /// One planning call: the answer must be one typed action. Never errors: a failure is the `text` of the
    /// result, for the caller to record.
    pub async fn complete(
        &self,
        system: &str,
        user: &str,
        schema: serde_json::Value,
    ) -> Completion {
        self.complete_with(system, user, "kube_reflexion_action", schema)
            .await
    }

    /// One chat completion whose answer must match `schema` (when the server is asked for JSON schema output).
    pub async fn complete_with(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        schema: serde_json::Value,
    ) -> Completion {
        let started = Instant::now();
        let mut args = CreateChatCompletionRequestArgs::default();
        args.model(self.config.model.clone())
            .messages(vec![
                ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                    content: ChatCompletionRequestSystemMessageContent::Text(system.to_string()),
                    name: None,
                }),
                ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                    content: ChatCompletionRequestUserMessageContent::Text(user.to_string()),
                    name: None,
                }),
            ])
            .max_tokens(self.config.max_tokens)
            .temperature(self.config.temperature);
        if self.config.json_schema {
            args.response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: schema_name.into(),
                    schema,
                    strict: Some(false),
                },
            });
        }
        let request = match args.build() {
            Ok(r) => r,
            Err(e) => {
                return Completion::failed(format!("building the request: {e}"), Duration::ZERO);
            }
        };
        let span = tracing::info_span!("llm_call", model = %self.config.model, max_tokens = self.config.max_tokens);
        let response =
            tokio::time::timeout(self.config.timeout, self.client.chat().create(request))
                .instrument(span)
                .await;
        let latency = started.elapsed();
        let response = match response {
            Err(_) => {
                return Completion::failed(
                    format!("timed out after {}s", self.config.timeout.as_secs_f64()),
                    latency,
                );
            }
            Ok(Err(e)) => {
                return Completion::failed(
                    format!(
                        "the LLM endpoint failed: {}",
                        bounded(&self.scrub(&e.to_string()))
                    ),
                    latency,
                );
            }
            Ok(Ok(r)) => r,
        };
        let (prompt_tokens, completion_tokens) = response
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens))
            .unwrap_or_default();
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| "the answer has no content".to_string())
            .and_then(|t| {
                if t.len() > MAX_ANSWER_BYTES {
                    Err(format!(
                        "the answer is {} bytes, more than the {MAX_ANSWER_BYTES} read",
                        t.len()
                    ))
                } else {
                    Ok(t)
                }
            });
        Completion {
            text: text.map(|t| self.scrub(&t)),
            prompt_tokens,
            completion_tokens,
            latency,
        }
    }

    /// An endpoint (or a proxy before it) can echo the key back in an error or an answer: it never reaches a
    /// record or a log.
    fn scrub(&self, text: &str) -> String {
        let key = self.config.api_key.as_str();
        if key.len() < 4 || key == "none" {
            return text.to_string();
        }
        text.replace(key, "<redacted>")
    }
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl Completion {
    fn failed(why: String, latency: Duration) -> Self {
        Self {
            text: Err(why),
            prompt_tokens: 0,
            completion_tokens: 0,
            latency,
        }
    }
}

/// Endpoint errors can echo the request; keep them short in records and logs.
fn bounded(s: &str) -> String {
    s.chars().take(300).collect()
}
