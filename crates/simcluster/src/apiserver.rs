//! The Kubernetes REST API over the store: discovery, CRUD, list and watch with selectors and
//! resourceVersions, patches, subresources (`status`, `log`, `binding`, `eviction`), Tables for kubectl.

use crate::error::ApiError;
use crate::patch;
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeType, DeleteOptions};
use crate::{Cluster, access, apply, protobuf, registry, table};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(cluster: Cluster) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/{*rest}", any(core_api))
        .route("/apis/{*rest}", any(group_api))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*gv}", get(openapi_group_version))
        .route("/v2/", get(registry::base))
        .route("/v2/{*rest}", get(registry::serve))
        .route(
            "/simcluster/faults",
            get(faults_pending).post(fault_add).delete(faults_clear),
        )
        .fallback(|uri: axum::http::Uri| async move { ApiError::unsupported_path(uri.path()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(cluster)
}

async fn version() -> Response {
    axum::Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-simcluster", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64",
    }))
    .into_response()
}

async fn api_versions() -> Response {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"],
                      "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}))
    .into_response()
}

fn api_group(name: &str) -> Value {
    let version = resources::RESOURCES
        .iter()
        .find(|r| r.group == name)
        .map_or("v1", |r| r.version);
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv], "preferredVersion": gv})
}

async fn api_groups() -> Response {
    let groups: Vec<Value> = resources::groups().into_iter().map(api_group).collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        .into_response()
}

/// The OpenAPI v3 index. simcluster publishes no schemas, only the operations with the parameters they accept,
/// which is what kubectl reads to learn that the server validates fields itself (`fieldValidation`).
async fn openapi_index() -> Response {
    let mut paths = serde_json::Map::new();
    for r in resources::RESOURCES {
        let key = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=simcluster")}),
        );
    }
    axum::Json(json!({"paths": paths})).into_response()
}

async fn openapi_group_version(Path(gv): Path<String>) -> Response {
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return ApiError::unsupported_path(&format!("/openapi/v3/{gv}")).into_response(),
    };
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
    ]);
    let mut paths = serde_json::Map::new();
    for r in resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        // kubectl looks for `fieldValidation` among the PATCH operation's own parameters.
        let op =
            json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}});
        paths.insert(collection, json!({"post": op}));
        paths.insert(
            format!(
                "{prefix}/{}{}/{{name}}",
                if r.namespaced {
                    "namespaces/{namespace}/"
                } else {
                    ""
                },
                r.plural
            ),
            json!({"patch": op, "put": op}),
        );
    }
    if paths.is_empty() {
        return ApiError::unsupported_path(&format!("/openapi/v3/{gv}")).into_response();
    }
    axum::Json(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (simcluster)", "version": "v1.33.0"},
                      "paths": paths, "components": {"schemas": {}}}))
    .into_response()
}

/// Whether a DeleteOptions body asks for a dry run (`dryRun: ["All"]`).
fn asks_dry_run(delete_options: &Value) -> bool {
    delete_options["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"))
}

/// A parsed resource path.
struct Target {
    rt: &'static ResourceType,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

struct Req {
    method: Method,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

async fn core_api(
    State(c): State<Cluster>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some((version, rest)) = segs.split_first() else {
        return api_versions().await;
    };
    let req = Req {
        method,
        params,
        headers,
        body,
    };
    if let Err(e) = admit_caller(&c, "", version, rest, &req) {
        return e.into_response();
    }
    dispatch(&c, "", version, rest, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Authenticate and authorize a request (`access`); `Err` is the 401 or 403 to answer.
fn admit_caller(
    c: &Cluster,
    group: &str,
    version: &str,
    segs: &[&str],
    req: &Req,
) -> Result<access::Caller, ApiError> {
    let caller = access::caller(c, &req.headers)?;
    // Every authenticated user may ask what they themselves may do (the `system:basic-user` role).
    if group == "authorization.k8s.io" && segs == ["selfsubjectaccessreviews"] {
        return Ok(caller);
    }
    let asked = access::attributes(group, version, segs, &req.method, &req.params);
    access::authorize(c, &caller, asked)?;
    Ok(caller)
}

async fn group_api(
    State(c): State<Cluster>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [group] if resources::groups().contains(group) => {
            let mut g = api_group(group);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            axum::Json(g).into_response()
        }
        ["authorization.k8s.io", "v1", rest @ ..] => {
            let req = Req {
                method,
                params,
                headers,
                body,
            };
            admit_caller(&c, "authorization.k8s.io", "v1", rest, &req)
                .and_then(|caller| access_review(&c, rest, &req, &caller))
                .unwrap_or_else(IntoResponse::into_response)
        }
        [group, version, rest @ ..] => {
            let req = Req {
                method,
                params,
                headers,
                body,
            };
            if let Err(e) = admit_caller(&c, group, version, rest, &req) {
                return e.into_response();
            }
            dispatch(&c, group, version, rest, req)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        _ => ApiError::unsupported_path(&format!("/apis/{rest}")).into_response(),
    }
}

/// `authorization.k8s.io/v1` access reviews, decided by RBAC over the stored Roles, ClusterRoles and bindings
/// (`rbac`). Created, never stored, as on a real API server.
fn access_review(
    c: &Cluster,
    segs: &[&str],
    req: &Req,
    caller: &access::Caller,
) -> Result<Response, ApiError> {
    use crate::rbac;
    if segs.is_empty() && req.method == Method::GET {
        let resource = |plural: &str, kind: &str, namespaced: bool| json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["create"]});
        return Ok(
            axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "authorization.k8s.io/v1", "resources": [
                resource("localsubjectaccessreviews", "LocalSubjectAccessReview", true),
                resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
                resource("subjectaccessreviews", "SubjectAccessReview", false)]}))
            .into_response(),
        );
    }
    let (kind, namespace) = match segs {
        ["subjectaccessreviews"] => ("SubjectAccessReview", None),
        ["selfsubjectaccessreviews"] => ("SelfSubjectAccessReview", None),
        ["namespaces", ns, "localsubjectaccessreviews"] => ("LocalSubjectAccessReview", Some(*ns)),
        _ => return Err(ApiError::unsupported_path(&segs.join("/"))),
    };
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {kind}",
            req.method
        )));
    }
    let review = object_body(req)?;
    let spec = &review["spec"];
    let mut attrs = rbac::Attributes::from_review(spec);
    if let Some(ns) = namespace {
        if !attrs.namespace.is_empty() && attrs.namespace != ns {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match the namespace {ns}"
            )));
        }
        attrs.namespace = ns.to_string();
    }
    let (user, asked_groups) = if kind == "SelfSubjectAccessReview" {
        match caller {
            access::Caller::User { name, groups } => (name.clone(), groups.clone()),
            access::Caller::Admin => {
                let mut out = review.clone();
                out["status"] = json!({"allowed": true, "reason": "simcluster: the cluster admin may do anything"});
                return Ok(json_response(StatusCode::CREATED, out));
            }
        }
    } else {
        let groups = spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(String::from))
            .collect();
        (
            spec["user"].as_str().unwrap_or_default().to_string(),
            groups,
        )
    };
    let stored = rbac::Stored::of(&c.store);
    let objects = stored.objects();
    let (allowed, reason) = rbac::decide(
        &objects,
        &user,
        &rbac::groups_of(&user, &asked_groups),
        &attrs,
    );
    let mut out = rbac::answer(&review, allowed, &reason);
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!(kind);
    Ok(json_response(StatusCode::CREATED, out))
}

fn parse_target(group: &str, version: &str, segs: &[&str]) -> Option<Target> {
    let namespaced =
        |plural: &str| resources::find(group, version, plural).filter(|r| r.namespaced);
    let (rt, ns, rest) = match segs {
        ["namespaces", ns, plural, rest @ ..] if namespaced(plural).is_some() => {
            (namespaced(plural)?, Some(ns.to_string()), rest)
        }
        [plural, rest @ ..] => (resources::find(group, version, plural)?, None, rest),
        [] => return None,
    };
    let (name, sub) = match rest {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    if sub
        .as_deref()
        .is_some_and(|s| !rt.subresources.contains(&s) && !matches!(s, "binding" | "eviction"))
    {
        return None;
    }
    Some(Target { rt, ns, name, sub })
}

async fn faults_pending(State(c): State<Cluster>) -> Response {
    axum::Json(json!({"faults": c.faults.pending()})).into_response()
}

async fn fault_add(State(c): State<Cluster>, body: Bytes) -> Response {
    let added = serde_json::from_slice::<crate::faults::Fault>(&body)
        .map_err(|e| ApiError::bad_request(format!("not a fault: {e}")))
        .and_then(|f| c.faults.add(f));
    match added {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(json!({"faults": c.faults.pending()})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn faults_clear(State(c): State<Cluster>) -> Response {
    c.faults.clear();
    axum::Json(json!({"faults": []})).into_response()
}

/// Serve a request, unless an injected fault hits it first (or after it wrote).
async fn dispatch(
    c: &Cluster,
    group: &str,
    version: &str,
    segs: &[&str],
    req: Req,
) -> Result<Response, ApiError> {
    let hit = parse_target(group, version, segs).and_then(|t| {
        let watch = req
            .params
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1");
        let verb = crate::faults::verb(&req.method, t.name.is_some(), watch)?;
        // A dry run is never hit: asked in the query, or in a delete's DeleteOptions body (as kube-rs asks it).
        let body_dry_run = req.method == Method::DELETE
            && serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| asks_dry_run(&b));
        if req.params.contains_key("dryRun") || body_dry_run {
            return None;
        }
        c.faults
            .hit(verb, t.rt.plural, t.name.as_deref(), t.sub.as_deref())
    });
    let Some(fault) = hit else {
        return serve(c, group, version, segs, req).await;
    };
    tracing::info!(?fault, "answering with an injected fault");
    let delay = Duration::from_millis(fault.delay_ms);
    if !fault.after_write {
        tokio::time::sleep(delay).await;
        return Err(fault.error());
    }
    // The write lands whether or not the client is still there to hear about it, as etcd commits it.
    let (c, group, version) = (c.clone(), group.to_string(), version.to_string());
    let segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let landed = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let _ = serve(&c, &group, &version, &segs, req).await;
    });
    let _ = landed.await;
    Err(fault.error())
}

/// The ServiceAccount admission plugin waits for a new namespace's `default` account, which its controller creates a
/// moment after the namespace (`kubectl apply -f` of a Namespace and a Pod in it in one file): up to 10 lookups,
/// 100-200 ms apart, as kube-apiserver's plugin does, before the create is refused for a missing account.
async fn default_service_account(store: &crate::store::Store, ns: &str, pod: &Value) {
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if sa != "default" {
        return;
    }
    for _ in 0..10 {
        if store
            .get(resources::service_accounts(), ns, "default")
            .is_ok()
        {
            return;
        }
        let jitter = uuid::Uuid::new_v4().as_u128() % 100;
        tokio::time::sleep(Duration::from_millis(100 + jitter as u64)).await;
    }
}

async fn serve(
    c: &Cluster,
    group: &str,
    version: &str,
    segs: &[&str],
    req: Req,
) -> Result<Response, ApiError> {
    if segs.is_empty() {
        return resources::api_resource_list(group, version)
            .map(|v| axum::Json(v).into_response())
            .ok_or_else(|| ApiError::unsupported_path(&format!("{group}/{version}")));
    }
    let t = parse_target(group, version, segs)
        .ok_or_else(|| ApiError::unsupported_path(&segs.join("/")))?;
    let ns = t.ns.clone().unwrap_or_default();
    if t.rt.namespaced && t.name.is_some() && t.ns.is_none() {
        return Err(ApiError::unsupported_path(&segs.join("/")));
    }
    let dry_run = dry_run(&req.params)?;
    if !accepts_json(&req.headers) {
        return Err(ApiError::not_acceptable(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
        ));
    }
    let store = &c.store;
    let wants_table = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match (&req.method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let labels = LabelSelector::parse(
                req.params
                    .get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?;
            let fields = FieldSelector::parse(
                req.params
                    .get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
                t.rt,
            )?;
            if req
                .params
                .get("watch")
                .is_some_and(|w| w == "true" || w == "1")
            {
                return watch(c, &t, labels, fields, &req.params);
            }
            let (items, rv) = store.list(t.rt, t.ns.as_deref());
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            if wants_table {
                return Ok(json_response(
                    StatusCode::OK,
                    table::table(t.rt.kind, &items, rv),
                ));
            }
            let (items, metadata) = crate::paging::page(items, rv, &req.params)?;
            let list = json!({"kind": t.rt.list_kind(), "apiVersion": t.rt.api_version(),
                              "metadata": metadata, "items": items});
            Ok(json_response(StatusCode::OK, list))
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = store.get(t.rt, &ns, name)?;
            if wants_table {
                return Ok(json_response(
                    StatusCode::OK,
                    table::table(t.rt.kind, &[obj], store.resource_version()),
                ));
            }
            Ok(json_response(StatusCode::OK, obj))
        }
        (&Method::GET, Some(name), Some("log")) => logs(c, &ns, name, &req.params).await,
        (&Method::POST, Some(name), Some("token")) if t.rt.kind == "ServiceAccount" => {
            let body = object_body(&req)?;
            let out = c.tokens.token_request(store, &ns, name, &body)?;
            Ok(json_response(StatusCode::CREATED, out))
        }
        (&Method::GET, Some(name), Some("scale")) => Ok(json_response(
            StatusCode::OK,
            scale_of(&store.get(t.rt, &ns, name)?),
        )),
        (&Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            let content_type = req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let is_put = req.method == Method::PUT;
            let body = if is_put {
                object_body(&req)?
            } else {
                parse_body(&req.body)?
            };
            let updated = store.modify(t.rt, &ns, name, false, dry_run, |old| {
                let mut scale = scale_of(old);
                if is_put {
                    scale = body.clone();
                } else {
                    apply_patch(&content_type, &mut scale, &body, "Scale", name)?;
                }
                let replicas = scale["spec"]["replicas"].as_i64().ok_or_else(|| {
                    ApiError::invalid(
                        "Scale",
                        name,
                        vec![crate::store::cause(
                            "FieldValueRequired",
                            "spec.replicas",
                            "Required value",
                        )],
                    )
                })?;
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "Scale",
                        name,
                        vec![crate::store::cause(
                            "FieldValueInvalid",
                            "spec.replicas",
                            "Invalid value: must be greater than or equal to 0",
                        )],
                    ));
                }
                let mut new = old.clone();
                new["spec"]["replicas"] = json!(replicas);
                new["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
                if new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
                    && !is_put
                {
                    new["metadata"]["resourceVersion"] = Value::Null;
                }
                Ok(new)
            })?;
            Ok(json_response(StatusCode::OK, scale_of(&updated)))
        }
        (&Method::POST, None, None) => {
            let mut obj = object_body(&req)?;
            apply::record_update(None, &mut obj, &field_manager(&req), None);
            if t.rt.kind == "Pod" {
                default_service_account(store, &ns, &obj).await;
            }
            let created = store.create(t.rt, &ns, obj, dry_run)?;
            Ok(json_response(StatusCode::CREATED, created))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let b = object_body(&req)?;
            let node = b["target"]["name"]
                .as_str()
                .ok_or_else(|| ApiError::bad_request("binding target name is required"))?;
            store.bind(&ns, name, node)?;
            Ok(json_response(
                StatusCode::CREATED,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
            ))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            // An Eviction carries the DeleteOptions of the deletion it asks for.
            let eviction = object_body(&req)?;
            let mut opts = delete_options_from(&eviction["deleteOptions"], &req.params)?;
            opts.dry_run |= dry_run;
            store.delete(resources::pods(), &ns, name, &opts)?;
            Ok(json_response(
                StatusCode::CREATED,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
            ))
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            let obj = object_body(&req)?;
            let manager = field_manager(&req);
            let updated = store.modify(t.rt, &ns, name, t.sub.is_some(), dry_run, |old| {
                let mut new = obj;
                apply::record_update(Some(old), &mut new, &manager, t.sub.as_deref());
                Ok(new)
            })?;
            Ok(json_response(StatusCode::OK, updated))
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let content_type = req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let manager = field_manager(&req);
            if kind == "application/apply-patch+yaml" {
                return server_side_apply(c, &t, &ns, name, &req, &manager, dry_run);
            }
            let body = parse_body(&req.body)?;
            let patched = store.modify(t.rt, &ns, name, t.sub.is_some(), dry_run, |old| {
                let mut new = old.clone();
                // A patch that does not mention resourceVersion must not trip the optimistic-concurrency check.
                new["metadata"]["resourceVersion"] = if kind == "application/json-patch+json" {
                    old["metadata"]["resourceVersion"].clone()
                } else {
                    Value::Null
                };
                apply_patch(&kind, &mut new, &body, t.rt.kind, name)?;
                if kind == "application/json-patch+json"
                    && new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
                {
                    new["metadata"]["resourceVersion"] = Value::Null;
                }
                apply::record_update(Some(old), &mut new, &manager, t.sub.as_deref());
                Ok(new)
            })?;
            Ok(json_response(StatusCode::OK, patched))
        }
        (&Method::DELETE, Some(name), None) => {
            let mut opts = delete_options(&req.body, &req.params)?;
            opts.dry_run |= dry_run;
            let deleted = store.delete(t.rt, &ns, name, &opts)?;
            Ok(json_response(StatusCode::OK, deleted))
        }
        (&Method::DELETE, None, None) => {
            let labels = LabelSelector::parse(
                req.params
                    .get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?;
            let fields = FieldSelector::parse(
                req.params
                    .get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
                t.rt,
            )?;
            let mut opts = delete_options(&req.body, &req.params)?;
            opts.dry_run |= dry_run;
            let (items, rv) = store.list(t.rt, t.ns.as_deref());
            let mut deleted = Vec::new();
            for o in items
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
            {
                let n = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ons = o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                deleted.push(store.delete(t.rt, &ons, &n, &opts)?);
            }
            let list = json!({"kind": t.rt.list_kind(), "apiVersion": t.rt.api_version(),
                              "metadata": {"resourceVersion": rv.to_string()}, "items": deleted});
            Ok(json_response(StatusCode::OK, list))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method
        ))),
    }
}

/// Who a write is by: `fieldManager`, else the client's User-Agent up to its first `/` (`kubectl`), as the API server
/// names managers.
fn field_manager(req: &Req) -> String {
    if let Some(m) = req.params.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    req.headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// `PATCH` with `application/apply-patch+yaml`: create the object from the configuration, or apply it to the live one.
fn server_side_apply(
    c: &Cluster,
    t: &Target,
    ns: &str,
    name: &str,
    req: &Req,
    manager: &str,
    dry_run: bool,
) -> Result<Response, ApiError> {
    if t.sub.is_some() {
        return Err(ApiError::method_not_allowed(
            "server-side apply of a subresource is not supported by simcluster",
        ));
    }
    if req.params.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    }
    let force = req.params.get("force").is_some_and(|f| f == "true");
    let config: Value = serde_yaml::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let api_version = config["apiVersion"].as_str().unwrap_or_default();
    if api_version != t.rt.api_version() || config["kind"] != t.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the apiVersion and kind of the body ({api_version}, {}) do not match the URL's ({}, {})",
            config["kind"].as_str().unwrap_or_default(),
            t.rt.api_version(),
            t.rt.kind
        )));
    }
    if config["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            config["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let (obj, created) =
        apply::apply_stored(&c.store, t.rt, ns, name, &config, manager, force, dry_run)?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, obj))
}

/// Apply a patch body of the given media type to `target`.
fn apply_patch(
    content_type: &str,
    target: &mut Value,
    body: &Value,
    kind: &str,
    name: &str,
) -> Result<(), ApiError> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" => patch::merge_patch(target, body),
        "application/strategic-merge-patch+json" => patch::strategic_merge_patch(target, body),
        "application/json-patch+json" => patch::json_patch(target, body).map_err(|e| {
            ApiError::invalid(
                kind,
                name,
                vec![crate::store::cause("FieldValueInvalid", "patch", &e)],
            )
        })?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            )));
        }
    }
    Ok(())
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let labels = obj["spec"]["selector"]["matchLabels"].as_object();
    let selector: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"]},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")},
    })
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// An object sent whole (create, update, a subresource): JSON, or protobuf as kubectl's typed commands send it.
fn object_body(req: &Req) -> Result<Value, ApiError> {
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if protobuf::is_protobuf(content_type) {
        return protobuf::decode(&req.body).map_err(|e| match e {
            protobuf::DecodeError::UnknownKind { .. } => {
                ApiError::unsupported_media_type(e.to_string())
            }
            other => ApiError::bad_request(other.to_string()),
        });
    }
    parse_body(&req.body)
}

/// Answers are JSON: a client that accepts only protobuf is told so (406), as a server without it would.
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t.is_empty() || t == "*/*" || t == "application/*" || t.starts_with("application/json")
    })
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn dry_run(params: &HashMap<String, String>) -> Result<bool, ApiError> {
    match params.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}; only \"All\" is supported"
        ))),
    }
}

fn delete_options(
    body: &Bytes,
    params: &HashMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    delete_options_from(&b, params)
}

fn delete_options_from(
    b: &Value,
    params: &HashMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let grace_period = match (
        b.get("gracePeriodSeconds"),
        params.get("gracePeriodSeconds"),
    ) {
        (Some(v), _) if !v.is_null() => Some(v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!("gracePeriodSeconds must be an integer, got {v}"))
        })?),
        (_, Some(p)) => Some(p.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds must be an integer, got {p:?}"))
        })?),
        _ => None,
    };
    let policy = b["propagationPolicy"]
        .as_str()
        .or(params.get("propagationPolicy").map(String::as_str))
        .unwrap_or("Background");
    if !["Background", "Foreground", "Orphan"].contains(&policy) {
        return Err(ApiError::bad_request(format!(
            "invalid propagationPolicy {policy:?}"
        )));
    }
    let orphan = policy == "Orphan" || b["orphanDependents"] == true;
    let foreground = policy == "Foreground";
    let body_dry = asks_dry_run(b);
    Ok(DeleteOptions {
        uid: b["preconditions"]["uid"].as_str().map(String::from),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        orphan,
        foreground,
        dry_run: body_dry,
        grace_period,
    })
}

/// `pods/log`: read from this process's kubelet when the pod runs on it, else from the kubelet of the pod's node
/// (its kubelet API, as a real API server proxies it).
async fn logs(
    c: &Cluster,
    ns: &str,
    name: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = c.store.get(resources::pods(), ns, name)?;
    let q = crate::kubelet::LogQuery::from_params(params);
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    let text = if c.local_kubelet && node == c.node_name {
        crate::kubelet::container_logs(c, &pod, &q)?
    } else {
        crate::kubelet::server::proxy_logs(c, &pod, &q).await?
    };
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

fn watch(
    c: &Cluster,
    t: &Target,
    labels: LabelSelector,
    fields: FieldSelector,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let from_rv = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let initial_events_end = params.get("sendInitialEvents").is_some_and(|b| b == "true");
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1024);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let filter = WatchFilter {
        rt: t.rt,
        ns: t.ns.clone(),
        labels,
        fields,
    };
    let watched = c.store.watch(t.rt, from_rv);
    let store = c.store.clone();
    let mut closings = c.faults.watch_closings();
    tokio::spawn(async move {
        let (backlog, mut changes) = match watched {
            Ok(w) => w,
            Err(e) => {
                let _ = tx
                    .send(Ok(line(json!({"type": "ERROR", "object": e.status()}))))
                    .await;
                return;
            }
        };
        let mut last_rv = from_rv.unwrap_or(0);
        for ch in backlog {
            last_rv = last_rv.max(ch.rv);
            if let Some(ev) = filter.event(&ch)
                && tx.send(Ok(ev)).await.is_err()
            {
                return;
            }
        }
        if initial_events_end {
            let rv = store.resource_version();
            let bm = bookmark(filter.rt, rv, true);
            if tx.send(Ok(bm)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                Ok(plural) = closings.recv() => if plural == filter.rt.plural { return },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(filter.rt, last_rv.max(1), false))).await.is_err() {
                        return;
                    }
                }
                r = changes.recv() => match r {
                    Ok(ch) => {
                        if ch.rv <= last_rv {
                            continue;
                        }
                        last_rv = ch.rv;
                        if let Some(ev) = filter.event(&ch)
                            && tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This watcher fell too far behind: it must re-list, exactly as after a compaction.
                        let gone = ApiError::gone(format!("too old resource version: {last_rv}"));
                        let _ = tx.send(Ok(line(json!({"type": "ERROR", "object": gone.status()})))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(response)
}

fn line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}}),
    )
}

struct WatchFilter {
    rt: &'static ResourceType,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event a watcher of this filter sees for a change: an object that starts matching is ADDED for it, one
    /// that stops matching is DELETED, as the API server's watch cache does.
    fn event(&self, ch: &Arc<Change>) -> Option<Bytes> {
        if !std::ptr::eq(ch.rt, self.rt) {
            return None;
        }
        if let Some(ns) = &self.ns
            && ch.object["metadata"]["namespace"].as_str() != Some(ns)
        {
            return None;
        }
        let now = self.matches(&ch.object);
        let before = ch.old.as_ref().map(|o| self.matches(o));
        let type_ = match (ch.type_, before, now) {
            (ChangeType::Added, _, true) => "ADDED",
            (ChangeType::Modified, Some(true), true) => "MODIFIED",
            (ChangeType::Modified, Some(false) | None, true) => "ADDED",
            (ChangeType::Modified, Some(true), false) => "DELETED",
            (ChangeType::Deleted, b, n) if n || b == Some(true) => "DELETED",
            _ => return None,
        };
        Some(line(json!({"type": type_, "object": ch.object})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_the_api_server() {
        // (kind, namespace, name, subresource) the path resolves to
        type Parsed<'a> = Option<(&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>)>;
        let cases: &[(&str, &str, &[&str], Parsed<'_>)] = &[
            ("", "v1", &["pods"], Some(("Pod", None, None, None))),
            (
                "",
                "v1",
                &["namespaces", "default", "pods"],
                Some(("Pod", Some("default"), None, None)),
            ),
            (
                "",
                "v1",
                &["namespaces", "default", "pods", "web", "log"],
                Some(("Pod", Some("default"), Some("web"), Some("log"))),
            ),
            (
                "",
                "v1",
                &["namespaces", "default"],
                Some(("Namespace", None, Some("default"), None)),
            ),
            (
                "",
                "v1",
                &["namespaces", "default", "status"],
                Some(("Namespace", None, Some("default"), Some("status"))),
            ),
            (
                "",
                "v1",
                &["nodes", "sim-node-1"],
                Some(("Node", None, Some("sim-node-1"), None)),
            ),
            (
                "apps",
                "v1",
                &["namespaces", "x", "deployments", "web", "status"],
                Some(("Deployment", Some("x"), Some("web"), Some("status"))),
            ),
            (
                "",
                "v1",
                &["namespaces", "default", "pods", "web", "exec"],
                None,
            ),
            ("", "v1", &["bogus"], None),
            ("apps", "v1", &["pods"], None),
        ];
        for (group, version, segs, want) in cases {
            let got = parse_target(group, version, segs).map(|t| (t.rt.kind, t.ns, t.name, t.sub));
            let want = want.map(|(k, ns, n, s)| {
                (
                    k,
                    ns.map(String::from),
                    n.map(String::from),
                    s.map(String::from),
                )
            });
            assert_eq!(got, want, "{segs:?}");
        }
    }
}
