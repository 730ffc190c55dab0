//! ServiceAccount tokens as kube-apiserver issues and authenticates them: the TokenRequest API
//! (`POST .../serviceaccounts/NAME/token`, what `kubectl create token` sends) and the token the kubelet mounts in a
//! pod (bound to that pod). Both are JWTs whose subject is `system:serviceaccount:NS:NAME`; one authenticates while
//! it has not expired and its ServiceAccount (and the pod it is bound to) still exists with the same uid. A request
//! bearing one is authorized by RBAC (`rbac`); a request bearing anything else is answered 401, as kube-apiserver
//! answers it. (Signed with HMAC-SHA256 under a key of this process, where kube-apiserver signs with RS256:
//! clients never check the signature, only the API server does.)

use crate::error::ApiError;
use crate::resources;
use crate::store::Store;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The issuer and audience kube-apiserver uses by default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// How long a token lives when the request does not say: an hour, as `kubectl create token` asks.
const DEFAULT_SECONDS: i64 = 3600;
/// The shortest lifetime the TokenRequest API accepts.
const MIN_SECONDS: i64 = 600;
/// A projected token's lifetime; the kubelet refreshes it long before it expires.
pub const POD_TOKEN_SECONDS: i64 = 3607;

#[derive(Debug)]
pub struct Issuer {
    key: [u8; 32],
}

impl Default for Issuer {
    fn default() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self { key }
    }
}

/// Who a token says its bearer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod (name, uid) the token is bound to.
    pub pod: Option<(String, String)>,
    pub expires: i64,
}

impl Claims {
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // An HMAC takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

impl Issuer {
    /// A token for ServiceAccount `sa` (its stored object), bound to `pod` if given, living `seconds`.
    pub fn issue(&self, sa: &Value, pod: Option<&Value>, seconds: i64, now: i64) -> (String, i64) {
        let meta = |o: &Value, f: &str| o["metadata"][f].as_str().unwrap_or_default().to_string();
        let (ns, name) = (meta(sa, "namespace"), meta(sa, "name"));
        let exp = now + seconds;
        let mut k8s =
            json!({"namespace": ns, "serviceaccount": {"name": name, "uid": meta(sa, "uid")}});
        if let Some(p) = pod {
            k8s["pod"] = json!({"name": meta(p, "name"), "uid": meta(p, "uid")});
        }
        let claims = json!({"aud": [ISSUER], "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(), "kubernetes.io": k8s,
            "sub": format!("system:serviceaccount:{ns}:{name}")});
        let head = B64.encode(json!({"alg": "HS256", "kid": "simcluster"}).to_string());
        let body = B64.encode(claims.to_string());
        let signed = format!("{head}.{body}");
        let sig = B64.encode(mac(&self.key, signed.as_bytes()));
        (format!("{signed}.{sig}"), exp)
    }

    /// The claims of a token this issuer signed that has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (signed, sig) = token.rsplit_once('.')?;
        let (_, body) = signed.split_once('.')?;
        let want = mac(&self.key, signed.as_bytes());
        // Compared in full (no early exit), as a verifier must.
        let got = B64.decode(sig).ok()?;
        if got.len() != want.len() || got.iter().zip(&want).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0
        {
            return None;
        }
        let c: Value = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        let k = &c["kubernetes.io"];
        let s = |v: &Value| v.as_str().map(String::from);
        let claims = Claims {
            namespace: s(&k["namespace"])?,
            name: s(&k["serviceaccount"]["name"])?,
            uid: s(&k["serviceaccount"]["uid"])?,
            pod: s(&k["pod"]["name"]).zip(s(&k["pod"]["uid"])),
            expires: c["exp"].as_i64()?,
        };
        (claims.expires > now).then_some(claims)
    }

    /// The user a bearer token authenticates, checked against the store: 401 when it does not.
    pub fn authenticate(&self, store: &Store, token: &str) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let c = self.verify(token, now).ok_or_else(ApiError::unauthorized)?;
        let uid_of = |rt, name: &str| {
            store
                .get(rt, &c.namespace, name)
                .ok()
                .and_then(|o| o["metadata"]["uid"].as_str().map(String::from))
        };
        if uid_of(resources::service_accounts(), &c.name).as_deref() != Some(c.uid.as_str()) {
            return Err(ApiError::unauthorized());
        }
        if let Some((pod, uid)) = &c.pod
            && uid_of(resources::pods(), pod).as_deref() != Some(uid.as_str())
        {
            return Err(ApiError::unauthorized());
        }
        Ok(c.user())
    }

    /// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a TokenRequest answered with its token.
    pub fn token_request(
        &self,
        store: &Store,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let sa = store.get(resources::service_accounts(), ns, name)?;
        let seconds = body["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_SECONDS);
        if seconds < MIN_SECONDS {
            return Err(ApiError::invalid(
                "TokenRequest",
                name,
                vec![(
                    "FieldValueInvalid".into(),
                    "spec.expirationSeconds".into(),
                    format!(
                        "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                    ),
                )],
            ));
        }
        let bound = &body["spec"]["boundObjectRef"];
        let pod = match bound["kind"].as_str() {
            None => None,
            Some("Pod") => Some(store.get(
                resources::pods(),
                ns,
                bound["name"].as_str().unwrap_or_default(),
            )?),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind a token to a {other}: simcluster binds tokens to pods only"
                )));
            }
        };
        let now = chrono::Utc::now().timestamp();
        let (token, exp) = self.issue(&sa, pod.as_ref(), seconds, now);
        let expires = chrono::DateTime::from_timestamp(exp, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let mut out = body.clone();
        out["kind"] = json!("TokenRequest");
        out["apiVersion"] = json!("authentication.k8s.io/v1");
        out["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
        out["spec"]["expirationSeconds"] = json!(seconds);
        if out["spec"]["audiences"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            out["spec"]["audiences"] = json!([ISSUER]);
        }
        out["status"] = json!({"token": token, "expirationTimestamp": expires});
        Ok(out)
    }
}

/// The token the kubelet mounts in `pod`, unless the pod or its ServiceAccount opts out
/// (`automountServiceAccountToken: false`, the pod's setting first).
pub fn for_pod(issuer: &Issuer, store: &Store, pod: &Value) -> Option<String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let sa = store.get(resources::service_accounts(), ns, name).ok()?;
    let mount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    mount.then(|| {
        issuer
            .issue(
                &sa,
                Some(pod),
                POD_TOKEN_SECONDS,
                chrono::Utc::now().timestamp(),
            )
            .0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_unaltered_and_unexpired() {
        let issuer = Issuer::default();
        let sa = json!({"metadata": {"namespace": "default", "name": "lister", "uid": "u1"}});
        let (token, exp) = issuer.issue(&sa, None, 600, 1_000);
        assert_eq!(exp, 1_600);
        let claims = issuer.verify(&token, 1_000).map(|c| c.user());
        assert_eq!(
            claims.as_deref(),
            Some("system:serviceaccount:default:lister")
        );
        assert_eq!(issuer.verify(&token, 1_600), None, "expired");
        assert_eq!(
            Issuer::default().verify(&token, 1_000),
            None,
            "another issuer's key"
        );
        let (head, rest) = token.split_once('.').unwrap_or_default();
        let (_, sig) = rest.split_once('.').unwrap_or_default();
        let forged = B64.encode(
            json!({"exp": 9_999, "kubernetes.io": {"namespace": "kube-system",
                   "serviceaccount": {"name": "admin", "uid": "u1"}}})
            .to_string(),
        );
        assert_eq!(
            issuer.verify(&format!("{head}.{forged}.{sig}"), 1_000),
            None,
            "forged claims"
        );
        assert_eq!(issuer.verify("not-a-jwt", 1_000), None);
    }
}
