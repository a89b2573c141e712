//! Who may call: a key is a tenant, the tenant header, hosts and origins without keys, JSON bodies only.

use persist::Pipeline;
use persist::memory::MemoryBackend;
use persist_serve::{Auth, Server};
use serde_json::{Value, json};

use super::{ACME, Api, GLOBEX, keys};

#[tokio::test]
async fn a_key_is_a_tenant_and_another_tenants_conversation_is_404() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let id = api.ok("POST", "/v1/conversations", Some(json!({}))).await["id"].as_str().unwrap().to_owned();
    let globex = api.as_key(GLOBEX);
    for (method, path) in [
        ("GET", format!("/v1/conversations/{id}")),
        ("GET", format!("/v1/conversations/{id}/items")),
        ("DELETE", format!("/v1/conversations/{id}")),
        ("POST", format!("/v1/persist/conversations/{id}/items/pop")),
    ] {
        let (status, body) = globex.call(method, &path, None).await;
        assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")), "{method} {path}");
    }
    let (status, _) = globex
        .call(
            "POST",
            &format!("/v1/conversations/{id}/items"),
            Some(json!({"items": [{"role": "user", "content": "x"}]})),
        )
        .await;
    assert_eq!(status, 404);
    let listed = globex.ok("GET", "/v1/persist/conversations", None).await;
    assert_eq!(listed["data"], json!([]));
    let listed = api.ok("GET", "/v1/persist/conversations", None).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());

    for key in ["", "sk-wrong-0123456789abcdef"] {
        let (status, body) = api
            .as_key(Box::leak(key.to_owned().into_boxed_str()))
            .call("GET", &format!("/v1/conversations/{id}"), None)
            .await;
        assert_eq!((status, body["error"]["type"].clone()), (401, json!("authentication_error")));
    }
    let bare = reqwest::get(format!("{}/v1/conversations/{id}", api.base)).await.unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(reqwest::get(format!("{}/health", api.base)).await.unwrap().status().as_u16(), 200);
    assert_eq!(reqwest::get(format!("{}/ready", api.base)).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn a_tenant_header_sent_twice_is_401() {
    let auth = Auth::TenantHeader(persist_serve::HeaderName::from_static("x-tenant"));
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), auth)).await;
    let list = async |tenants: &[&str]| {
        let mut request = api.http.get(format!("{}/v1/persist/conversations", api.base));
        for tenant in tenants {
            request = request.header("x-tenant", *tenant);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap())
    };
    assert_eq!(list(&["acme"]).await.0, 200);
    // A gateway that appends its header to the client's: the client would pick its tenant.
    for tenants in [&["globex", "acme"][..], &["acme", "acme"], &["globex, acme"], &[]] {
        let (status, body) = list(tenants).await;
        assert_eq!((status, body["error"]["type"].clone()), (401, json!("authentication_error")), "{tenants:?}");
    }
}

/// A server without keys on loopback, and a request to it with `headers`.
async fn open_request(server: Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let api = Api::start(server).await;
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = api.http.request(method, format!("{}{path}", api.base)).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value.replace("PORT", api.base.rsplit(':').next().unwrap()));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_415_and_stores_nothing() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let server = Server::new(pipeline.clone(), Auth::Open(None));
    let create = json!({"items": [{"role": "user", "content": "from a web page"}]}).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx"), None]
    {
        let headers: Vec<(&str, &str)> = content_type.map(|value| ("content-type", value)).into_iter().collect();
        let (status, body) = open_request(server.clone(), "POST", "/v1/conversations", &headers, &create).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    let threads = pipeline.threads(persist::read::ListThreads::new()).await.unwrap();
    assert!(threads.items.is_empty(), "nothing written by a refused request");
    let json = [("content-type", "Application/JSON; charset=utf-8")];
    assert_eq!(open_request(server.clone(), "POST", "/v1/conversations", &json, &create).await.0, 200);
    assert_eq!(open_request(server, "POST", "/v1/conversations", &[], "").await.0, 200, "an empty body is {{}}");
}

#[tokio::test]
async fn without_keys_a_foreign_host_or_origin_is_refused() {
    let server = Server::new(Pipeline::new(MemoryBackend::new()), Auth::Open(None));
    let get = async |server: &Server, headers: &[(&str, &str)]| {
        open_request(server.clone(), "GET", "/v1/persist/conversations", headers, "").await
    };
    for allowed in [
        &[][..],
        &[("host", "localhost:PORT")],
        &[("host", "LOCALHOST")],
        &[("host", "[::1]:PORT")],
        &[("host", "127.0.0.1:PORT"), ("origin", "http://localhost:3000")],
    ] {
        assert_eq!(get(&server, allowed).await.0, 200, "{allowed:?}");
    }
    // DNS rebinding (a name of the attacker's that resolves to 127.0.0.1), and a page of
    // another site posting to the loopback address.
    for foreign in [
        &[("host", "rebind.example:PORT")][..],
        &[("host", "localhost.rebind.example")],
        &[("origin", "http://evil.example")],
        &[("origin", "http://127.0.0.1.evil.example:PORT")],
        &[("origin", "null")],
    ] {
        let (status, body) = get(&server, foreign).await;
        assert_eq!((status, body["error"]["type"].clone()), (403, json!("permission_error")), "{foreign:?}: {body}");
    }
    let (status, _) = open_request(
        server.clone(),
        "POST",
        "/v1/conversations",
        &[("origin", "http://evil.example"), ("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(status, 403, "a cross-site POST writes nothing");

    // An operator names more hosts; `*` allows any.
    let named = server.clone().with_allowed_hosts(["chat.internal", "Gateway.Internal:8443"]);
    for host in
        [&[("host", "chat.internal:PORT"), ("origin", "https://gateway.internal")][..], &[("host", "gateway.internal")]]
    {
        assert_eq!(get(&named, host).await.0, 200, "{host:?}");
    }
    assert_eq!(get(&named, &[("host", "rebind.example")]).await.0, 403);
    let any = server.with_allowed_hosts(["*"]);
    assert_eq!(get(&any, &[("host", "rebind.example"), ("origin", "http://evil.example")]).await.0, 200);

    // With keys the key proves the caller: a page cannot send it to another site without a
    // CORS preflight this server never grants, and behind a balancer hosts vary.
    let keyed = Server::new(Pipeline::new(MemoryBackend::new()), keys());
    let auth = format!("Bearer {ACME}");
    let (status, _) = get(&keyed, &[("host", "api.example.com"), ("authorization", &auth)]).await;
    assert_eq!(status, 200);
}
