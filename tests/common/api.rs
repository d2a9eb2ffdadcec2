//! The review API as a test calls it: JSON in and out over a real HTTP
//! client that bypasses any proxy.

use std::time::Duration;

use serde_json::Value;

use super::ROOT;

/// A review API client.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/holds/{id}/{action}` (`approve` or `dismiss`) as `token`.
    pub async fn decide(
        &self,
        id: &str,
        action: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = format!("/api/holds/{id}/{action}");
        self.call("POST", &path, Some(token), body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        let (status, v) = self.call("GET", path, Some(token), None).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// Polls a hold until it reaches `state`.
    pub async fn until(&self, id: &str, state: &str) -> Value {
        for _ in 0..200 {
            let v = self.get(&format!("/api/holds/{id}"), ROOT.1).await;
            if v["state"] == state {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("hold {id} never became {state}");
    }
}
