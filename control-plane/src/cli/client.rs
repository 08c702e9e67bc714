//! The admin API client behind the CLI's resource commands.

use std::time::Duration;

use serde_json::Value;

use super::table;
use super::Remote;

/// How long one CLI request may take end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most pages `get_all` follows (100 items each): a list command never runs unbounded.
const MAX_PAGES: usize = 1_000;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    json: bool,
}

impl Client {
    pub fn new(remote: &Remote) -> Result<Client, String> {
        let token = remote
            .token
            .clone()
            .ok_or("no admin token: pass --token or set TOLLGATE_TOKEN (create one with `tollgate token create`)")?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: format!("{}/admin/api/v1", remote.url.trim_end_matches('/')),
            token,
            json: remote.json,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("bad response ({status}): {e}"))?;
        if status.is_success() {
            return Ok(body);
        }
        let err = &body["error"];
        let param = err["param"]
            .as_str()
            .map(|p| format!(" (param: {p})"))
            .unwrap_or_default();
        Err(format!(
            "{} {}: {}{param}",
            status.as_u16(),
            err["code"].as_str().unwrap_or("error"),
            err["message"].as_str().unwrap_or("request failed")
        ))
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, String> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, String> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// A non-JSON resource (a PDF): its bytes, or the API's error.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        if !resp.status().is_success() {
            return self
                .send(self.http.get(format!("{}{path}", self.base)))
                .await
                .map(|_| Vec::new());
        }
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot read the response: {e}"))
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Every item of a list, following cursors.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=100&starting_after={c}"),
                None => format!("{path}{sep}limit=100"),
            };
            let page = self.get(&url).await?;
            if let Some(items) = page["data"].as_array() {
                out.extend(items.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(c) if page["has_more"].as_bool() == Some(true) => cursor = Some(c.to_string()),
                _ => return Ok(out),
            }
        }
        Err(format!("more than {MAX_PAGES} pages; narrow the query"))
    }

    pub fn show(&self, v: Value, fields: &[&str]) -> Result<(), String> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", table::record(&v, fields));
        }
        Ok(())
    }

    pub fn show_list(&self, items: Vec<Value>, fields: &[&str]) -> Result<(), String> {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default()
            );
        } else {
            print!("{}", table::rows(&items, fields));
        }
        Ok(())
    }
}
