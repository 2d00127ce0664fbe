//! One webhook delivery over HTTP: a client whose resolver refuses private addresses and whose
//! redirects are re-checked (the rules are `pipeline::webhooks::TargetPolicy`'s), and a POST
//! classified into delivered, worth another try, or never worth one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pipeline::webhooks::{signature, Refusal, TargetPolicy};

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered(u16),
    /// Worth another try (timeouts, 5xx, 429, connection errors).
    Transient(String),
    /// Never worth another try (refused target, 4xx).
    Permanent(String),
}

/// Resolves names and refuses any whose addresses the policy forbids.
struct GuardedResolver {
    policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            policy.check_resolved(&host, &addrs)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client for webhooks: guarded resolver (unless private targets are allowed), every
/// redirect re-checked, short timeouts.
pub fn client(policy: &TargetPolicy) -> reqwest::Client {
    let redirect_policy = policy.clone();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("imagepipe-webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match redirect_policy.check(attempt.url().as_str()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(RedirectRefused(refusal)),
            }
        }));
    if !policy.allow_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }));
    }
    builder.build().expect("webhook client")
}

/// POSTs `body` to `url`, signed when there is a secret.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    secret: Option<&[u8]>,
    policy: &TargetPolicy,
) -> Delivery {
    if let Err(refusal) = policy.check(url) {
        return Delivery::Permanent(refusal.to_string());
    }
    let mut request = client.post(url).header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-imagepipe-signature", signature(secret, &body));
    }
    match request.body(body).send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Delivery::Delivered(status.as_u16())
            } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                Delivery::Transient(format!("HTTP {status}"))
            } else {
                Delivery::Permanent(format!("HTTP {status}"))
            }
        }
        Err(e) => match refusal_in(&e) {
            Some(refusal) => Delivery::Permanent(refusal),
            None => Delivery::Transient(pipeline::text::error_chain(&e)),
        },
    }
}

/// A redirect to a target the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("redirect refused: {0}")]
struct RedirectRefused(Refusal);

/// The policy's refusal behind a failed request (a redirect, or the resolver), if any.
fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(redirect) = e.downcast_ref::<RedirectRefused>() {
            return Some(redirect.to_string());
        }
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Some(refusal.to_string());
        }
        current = e.source();
    }
    None
}
