//! The Kubernetes client both binaries use: kube-rs's own stack (base URI, retries on 429/503/504, auth, extra
//! headers, connect/read/write timeouts) over a connector with TCP_NODELAY, as client-go has by Go's default.
//! kube-rs 5 leaves Nagle's algorithm on (kube-rs/kube#2056): a request written in two segments (headers, then the
//! body of a PATCH or POST) waited for the server's delayed ACK, about 40 ms, on every other request.

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use kube::client::{ClientBuilder, ConfigExt, DynBody, retry::RetryPolicy};
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// The HTTP service under a [`kube::Client`], boxed so that callers can add their own layers.
pub type Service =
    BoxService<http::Request<kube::client::Body>, http::Response<Box<DynBody>>, BoxError>;

/// A client builder for `config`. Credentials from an exec plugin that may expire with a client certificate keep
/// kube-rs's own builder, which knows when to rebuild the client.
pub fn builder(config: kube::Config) -> Result<ClientBuilder<Service>, kube::Error> {
    if config.auth_info.exec.is_some() {
        return ClientBuilder::try_from(config);
    }
    let default_ns = config.default_namespace.clone();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let mut connector =
        hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(client)
        .map_response(|r: http::Response<hyper::body::Incoming>| {
            r.map(|body| Box::new(body.map_err(BoxError::from)) as Box<DynBody>)
        })
        .boxed();
    Ok(ClientBuilder::new(service, default_ns))
}

/// A client for `config` (see [`builder`]).
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(builder(config)?.build())
}
