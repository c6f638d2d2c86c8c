//! Declared resources end to end: every operation through route names, REST paths, `#api` and
//! sockful's shape, over SocketCluster and CTProto, on SQLite and on PostgreSQL.
//!
//! Each test runs once per backend (`sqlite::…`, `postgres::…`). PostgreSQL tests use
//! postgres://postgres@127.0.0.1:5432/test, each in a schema of its own; without a server they
//! skip with a message, except in CI.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use sockyard::client::ctproto::CtClient;
use sockyard::client::{Client, ClientError, ClientEvent, ClientOptions, Events};
use sockyard::codec::protobuf::Schema;
use sockyard::codec::Encoding;
use sockyard::config::DEMO_PROTO;
use sockyard::resource::query::Query;
use sockyard::resource::{
    Before, Change, HookContext, Operation, Record, ResourceDef, Resources, ResourcesBuilder,
    Scope, SqlStore, Store, StoreError, Updated,
};
use sockyard::{ApiError, Config, Router, Server};
use sockyard_test_support::client::{next_update, publication};
use sockyard_test_support::database::{PostgresSchema, SqliteFile, POSTGRES_URL};
use sockyard_test_support::server::{start_server, TestServer};
use sockyard_test_support::skip::ok_or_skip;
use sockyard_test_support::socketcluster::{echo, handshaken, next_json};
use sockyard_test_support::ws::send;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database of one test's own, removed when dropped.
enum Db {
    Sqlite(SqliteFile),
    Postgres(PostgresSchema),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Self::Sqlite(file) => file.url(),
            Self::Postgres(schema) => schema.url(),
        }
    }
}

/// A fresh database for `backend`, or `None` when PostgreSQL is absent outside CI.
async fn db(backend: Backend) -> Option<Db> {
    match backend {
        Backend::Sqlite => Some(Db::Sqlite(SqliteFile::new("resources"))),
        Backend::Postgres => {
            let schema = PostgresSchema::create("resources")
                .await
                .map_err(|err| format!("PostgreSQL is not reachable at {POSTGRES_URL}: {err}"));
            ok_or_skip("a resources test on PostgreSQL", schema).map(Db::Postgres)
        }
    }
}

/// A running server with resources.
struct App {
    server: TestServer,
}

impl App {
    fn ct_url(&self) -> String {
        self.server.url_of("/ctproto")
    }

    fn protobuf_url(&self) -> String {
        self.server.url_of("/socketcluster-protobuf/")
    }

    async fn client(&self) -> (Client, Events) {
        Client::connect(&self.server.url(), ClientOptions::default())
            .await
            .expect("connect")
    }

    /// A client signed in as `username` through the demo's `login`.
    async fn user(&self, username: &str) -> (Client, Events) {
        let (client, events) = self.client().await;
        ok(&client, "login", json!({ "username": username })).await;
        (client, events)
    }
}

/// The config with its resources replaced by those in `resources_toml` (when given).
fn config(db: &Db, resources_toml: Option<&str>) -> Config {
    let mut config = match resources_toml {
        Some(text) => Config::from_toml_str(text, "test").expect("test config"),
        None => Config::default(),
    };
    config.storage.url = db.url();
    config
}

/// Opens the resources and starts a server with them and the demo procedures.
async fn serve(
    db: &Db,
    resources_toml: Option<&str>,
    configure: impl FnOnce(ResourcesBuilder) -> ResourcesBuilder,
) -> Result<App, sockyard::Error> {
    let config = config(db, resources_toml);
    let resources: Resources = configure(ResourcesBuilder::from_declarations(
        &config.resources,
        &config.storage,
    ))
    .open_storage(&config.storage)
    .await?;
    Ok(serve_resources(&config, resources).await)
}

/// Starts a server with `resources` and the demo procedures.
async fn serve_resources(config: &Config, resources: Resources) -> App {
    let router = Router::new()
        .nest("", sockyard::demo::router())
        .nest("", resources.router());
    let server = Server::builder(config)
        .routes(router.build().expect("routes"))
        .resources(resources)
        .build()
        .expect("server");
    App {
        server: start_server(server).await,
    }
}

/// The demo application on a fresh database.
async fn demo(backend: Backend) -> Option<(App, Db)> {
    let db = db(backend).await?;
    let app = serve(&db, None, |b| b).await.expect("serve");
    Some((app, db))
}

async fn call(client: &Client, event: &str, data: Value) -> Result<Value, ApiError> {
    match client.invoke(event, data).await {
        Ok(reply) => Ok(reply.unwrap_or(Value::Null)),
        Err(ClientError::Remote(error)) => Err(error),
        Err(other) => panic!("{event}: {other}"),
    }
}

async fn ok(client: &Client, event: &str, data: Value) -> Value {
    call(client, event, data.clone())
        .await
        .unwrap_or_else(|e| panic!("{event} {data}: {e:?}"))
}

async fn err(client: &Client, event: &str, data: Value) -> ApiError {
    match call(client, event, data.clone()).await {
        Ok(reply) => panic!("{event} {data}: expected an error, got {reply}"),
        Err(error) => error,
    }
}

/// No publication arrives on any channel within a short while.
async fn no_publication(events: &mut Events) {
    let wait = async {
        loop {
            if let Some(ClientEvent::Publication { channel, data }) = events.next().await {
                return (channel, data);
            }
        }
    };
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), wait).await {
        panic!("unexpected publication {got:?}");
    }
}

fn id(record: &Value) -> i64 {
    record["id"].as_i64().expect("record id")
}

fn absent(record: &Value, field: &str) -> bool {
    record.get(field).is_none_or(Value::is_null)
}

/// Generates one test per backend from each `async fn name(backend: Backend)`.
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_each_backend!(
    every_operation_by_route_name,
    rest_paths_and_sockful_reach_the_same_records,
    api_over_protobuf_reaches_resources,
    list_filters_sorting_and_pages,
    validation_and_bad_input,
    names_the_server_keeps_are_refused,
    field_types_constraints_and_defaults,
    children_and_cascading_destroy,
    live_events_reach_other_clients,
    access_rules_and_owners,
    hooks_and_remote_methods,
    concurrent_updates_conflict,
    a_cascade_is_announced_after_the_child_writes_it_follows,
    ctproto_clients_reach_resources,
    migrations_add_fields_and_refuse_losses,
);

async fn every_operation_by_route_name(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (c, _events) = app.client().await;
    let created = ok(&c, "creature/create", json!({"name": "Smaug", "age": 171})).await;
    assert!(id(&created) > 0);
    assert_eq!(created["version"], 1);
    assert_eq!(created["name"], "Smaug");
    assert_eq!(created["age"], 171);
    let ctime = created["ctime"].as_i64().unwrap();
    assert!(ctime > 1_600_000_000_000, "{created}");
    assert_eq!(created["mtime"], created["ctime"]);
    let creature_id = id(&created);

    assert_eq!(
        ok(&c, "creature/get", json!({"id": creature_id})).await,
        created
    );
    // Ids may come as decimal text too.
    assert_eq!(
        ok(&c, "creature/get", json!({"id": creature_id.to_string()})).await,
        created
    );
    let page = ok(&c, "creature/list", json!({})).await;
    assert_eq!(page["data"], json!([created]));
    assert_eq!(page["total"], 1);

    let missing_version = err(
        &c,
        "creature/update",
        json!({"id": creature_id, "name": "X"}),
    )
    .await;
    assert_eq!(missing_version.name, "BadRequest");
    assert!(
        missing_version.message.contains("version"),
        "{missing_version:?}"
    );

    // update replaces: fields left out are gone.
    let updated = ok(
        &c,
        "creature/update",
        json!({"id": creature_id, "version": 1, "name": "Smaug the Golden"}),
    )
    .await;
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["name"], "Smaug the Golden");
    assert!(absent(&updated, "age"), "{updated}");
    assert_eq!(updated["ctime"], ctime);
    assert!(updated["mtime"].as_i64().unwrap() >= ctime);

    // patch merges; null removes.
    let patched = ok(
        &c,
        "creature/patch",
        json!({"id": creature_id, "version": 2, "age": 172}),
    )
    .await;
    assert_eq!(patched["version"], 3);
    assert_eq!(patched["name"], "Smaug the Golden");
    assert_eq!(patched["age"], 172);
    let patched = ok(
        &c,
        "creature/patch",
        json!({"id": creature_id, "version": 3, "age": null}),
    )
    .await;
    assert_eq!(patched["version"], 4);
    assert!(absent(&patched, "age"), "{patched}");

    let stale = err(
        &c,
        "creature/patch",
        json!({"id": creature_id, "version": 1, "age": 5}),
    )
    .await;
    assert_eq!(stale.name, "Conflict");
    assert_eq!(stale.extra["expected"], 1);
    assert_eq!(stale.extra["actual"], 4);

    let destroyed = ok(&c, "creature/destroy", json!({"id": creature_id})).await;
    assert_eq!(destroyed, patched);
    for (event, data) in [
        ("creature/get", json!({"id": creature_id})),
        ("creature/destroy", json!({"id": creature_id})),
        (
            "creature/patch",
            json!({"id": creature_id, "version": 4, "age": 1}),
        ),
    ] {
        let missing = err(&c, event, data).await;
        assert_eq!(missing.name, "NotFound", "{event}");
        assert_eq!(missing.extra["id"], creature_id, "{event}");
    }
    assert_eq!(ok(&c, "creature/list", json!({})).await["total"], 0);
}

async fn rest_paths_and_sockful_reach_the_same_records(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (c, _events) = app.client().await;
    let a = ok(&c, "POST /creature", json!({"name": "Ancalagon", "age": 1})).await;
    let path = format!("/creature/{}", id(&a));
    assert_eq!(ok(&c, &format!("GET {path}"), Value::Null).await, a);
    assert_eq!(
        ok(&c, "creature/get", json!({"id": id(&a)})).await,
        a,
        "the name and the path reach the same record"
    );
    let a = ok(
        &c,
        &format!("PATCH {path}"),
        json!({"version": 1, "age": 2}),
    )
    .await;
    assert_eq!(
        (a["version"].clone(), a["age"].clone()),
        (json!(2), json!(2))
    );
    let a = ok(
        &c,
        &format!("PUT {path}"),
        json!({"version": 2, "name": "Ancalagon the Black"}),
    )
    .await;
    assert_eq!(a["version"], 3);
    assert!(absent(&a, "age"));
    let page = ok(&c, "GET /creature", json!({"name": "Ancalagon the Black"})).await;
    assert_eq!(page["data"], json!([a]));

    // sockful: event `creature` with {action, payload}.
    let sockful = |action: &str, payload: Value| json!({"action": action, "payload": payload});
    let b = ok(
        &c,
        "creature",
        sockful("create", json!({"name": "Glaurung"})),
    )
    .await;
    assert_eq!(b["version"], 1);
    assert_eq!(ok(&c, "creature", sockful("get", json!(id(&b)))).await, b);
    assert_eq!(
        ok(&c, "creature", sockful("get", json!({"id": id(&b)}))).await,
        b
    );
    let all = ok(&c, "creature", sockful("all", json!({"$sort": {"id": 1}}))).await;
    assert_eq!(all, json!([a, b]), "`all` answers the records themselves");
    let b = ok(
        &c,
        "creature",
        sockful(
            "update",
            json!({"id": id(&b), "version": 1, "name": "Glaurung", "age": 7}),
        ),
    )
    .await;
    assert_eq!(b["age"], 7);
    let b = ok(
        &c,
        "creature",
        sockful("patch", json!({"id": id(&b), "version": 2, "age": 8})),
    )
    .await;
    assert_eq!(b["age"], 8);
    let unknown = err(&c, "creature", sockful("fly", json!({}))).await;
    assert_eq!(unknown.name, "NotFound");
    assert_eq!(unknown.message, "fly is not a valid action.");
    assert_eq!(
        ok(&c, "creature", sockful("destroy", json!(id(&b)))).await,
        b
    );
    assert_eq!(ok(&c, &format!("DELETE {path}"), Value::Null).await, a);
    let gone = err(&c, &format!("GET {path}"), Value::Null).await;
    assert_eq!(gone.name, "NotFound");
    assert_eq!(ok(&c, "GET /creature", json!({})).await["total"], 0);
}

async fn api_over_protobuf_reaches_resources(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let schema =
        Arc::new(Schema::compile(&[("demo.proto".into(), DEMO_PROTO.into())], true, &[]).unwrap());
    let (c, _events) = Client::connect(
        &app.protobuf_url(),
        ClientOptions::default().encoding(Encoding::Protobuf(schema.clone())),
    )
    .await
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let encode = |type_name: &str, value: Value| {
        let descriptor = schema.message(type_name).unwrap();
        b64.encode(schema.encode_message(&descriptor, value).unwrap())
    };
    let decode = |reply: &Value| {
        let descriptor = schema.message(reply["dataType"].as_str().unwrap()).unwrap();
        let bytes = b64.decode(reply["buffer"].as_str().unwrap()).unwrap();
        schema.decode_message(&descriptor, &bytes).unwrap()
    };
    let api = |resource: String, method: &str, body: Option<Value>| {
        let mut call = json!({"resource": resource, "method": method});
        if let Some(body) = body {
            call["dataType"] = json!(".app.Creature");
            call["buffer"] = json!(encode(".app.Creature", body));
        }
        call
    };

    let reply = ok(
        &c,
        "#api",
        api(
            "/creature".into(),
            "post",
            Some(json!({"name": "Proto", "age": 0})),
        ),
    )
    .await;
    assert_eq!(reply["dataType"], ".app.Creature");
    assert_ne!(reply["isError"], true);
    let created = decode(&reply);
    assert_eq!(created["name"], "Proto");
    assert_eq!(created["age"], 0, "optional fields keep a zero");
    assert_eq!(created["version"], 1);
    let path = format!("/creature/{}", created["id"]);

    let fetched = decode(&ok(&c, "#api", api(path.clone(), "get", None)).await);
    assert_eq!(fetched, created);
    let patched = decode(
        &ok(
            &c,
            "#api",
            api(path.clone(), "patch", Some(json!({"version": 1, "age": 3}))),
        )
        .await,
    );
    assert_eq!(
        (patched["age"].clone(), patched["version"].clone()),
        (json!(3), json!(2))
    );
    let reply = ok(&c, "#api", api("/creature".into(), "get", None)).await;
    assert_eq!(reply["dataType"], ".app.CreaturePage");
    let page = decode(&reply);
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"], json!([patched]));

    // Errors come back under the declared error type.
    let reply = ok(
        &c,
        "#api",
        api("/creature".into(), "post", Some(json!({"age": 4}))),
    )
    .await;
    assert_eq!(reply["isError"], true);
    assert_eq!(reply["dataType"], ".app.ResourceError");
    let error = decode(&reply);
    assert_eq!(error["name"], "ValidationError");
    assert_eq!(error["errors"][0]["attribute"], "required");
    assert_eq!(error["errors"][0]["property"], "name");
    let reply = ok(
        &c,
        "#api",
        api(
            path.clone(),
            "put",
            Some(json!({"version": 1, "name": "Stale"})),
        ),
    )
    .await;
    assert_eq!(decode(&reply)["name"], "Conflict");
    decode(&ok(&c, "#api", api(path.clone(), "delete", None)).await);
    let reply = ok(&c, "#api", api(path, "get", None)).await;
    assert_eq!(reply["isError"], true);
    assert_eq!(decode(&reply)["name"], "NotFound");
}

async fn list_filters_sorting_and_pages(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let app = serve(&db, None, |b| b.limits(10, 20)).await.unwrap();
    let (c, _events) = app.client().await;
    for age in 0..30 {
        ok(
            &c,
            "creature/create",
            json!({"name": format!("c{age}"), "age": age}),
        )
        .await;
    }
    let ages = |page: &Value| -> Vec<i64> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["age"].as_i64().unwrap())
            .collect()
    };
    let list = |query: Value| {
        let c = c.clone();
        async move { ok(&c, "creature/list", query).await }
    };
    let sorted = |mut query: Value| {
        query["$sort"] = json!({"age": 1});
        query["$limit"] = json!(20);
        query
    };
    for (query, expected) in [
        (json!({"age": {"$gte": 10, "$lt": 13}}), vec![10, 11, 12]),
        (json!({"age": {"$gt": 27}}), vec![28, 29]),
        (json!({"age": {"$lte": 1}}), vec![0, 1]),
        (json!({"age": {"$eq": 5}}), vec![5]),
        (json!({"age": 6}), vec![6]),
        (json!({"age": {"$in": [3, 1, 2, 99]}}), vec![1, 2, 3]),
        (json!({"name": "c7"}), vec![7]),
        (
            json!({"name": {"$in": ["c8", "c9"]}, "age": {"$ne": 8}}),
            vec![9],
        ),
        (json!({"age": {"$gt": 100}}), vec![]),
    ] {
        assert_eq!(
            ages(&list(sorted(query.clone())).await),
            expected,
            "{query}"
        );
    }
    let page = list(json!({"age": {"$ne": 0}})).await;
    assert_eq!(page["total"], 29);
    let page = list(json!({"age": {"$nin": [0, 1, 2]}, "$sort": {"age": 1}})).await;
    assert_eq!(page["total"], 27);
    assert_eq!(ages(&page)[0], 3);

    // Without $limit the server's default page size applies; total counts them all.
    let page = list(json!({})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 10);
    assert_eq!(page["total"], 30);
    assert_eq!(page["limit"], 10);

    let page = list(json!({"$sort": {"age": -1}, "$limit": 5})).await;
    assert_eq!(ages(&page), [29, 28, 27, 26, 25]);
    let page = list(json!({"$sort": {"age": 1}, "$limit": 5, "$skip": 5})).await;
    assert_eq!(ages(&page), [5, 6, 7, 8, 9]);
    assert_eq!(page["skip"], 5);

    // Cursor pagination: pass `next` back as `$after` until there is none.
    let mut seen = Vec::new();
    let mut query = json!({"$sort": {"age": -1}, "$limit": 7});
    for _ in 0..10 {
        let page = list(query.clone()).await;
        seen.extend(ages(&page));
        match page.get("next") {
            Some(next) => query["$after"] = next.clone(),
            None => break,
        }
    }
    assert_eq!(seen, (0..30).rev().collect::<Vec<i64>>());

    // Records without the sort key come last going up and first going down, and paging
    // reaches every one of them in the same order as one big page.
    for name in ["n1", "n2", "n3"] {
        ok(&c, "creature/create", json!({ "name": name })).await;
    }
    let ids =
        |page: &Value| -> Vec<i64> { page["data"].as_array().unwrap().iter().map(id).collect() };
    for direction in [1, -1] {
        let whole =
            list(json!({"$sort": {"age": direction}, "$limit": 20, "age": {"$gte": 25}})).await;
        let mut everything = ids(&whole);
        let nulls = list(
            json!({"$sort": {"age": direction}, "$limit": 20, "name": {"$in": ["n1", "n2", "n3"]}}),
        )
        .await;
        assert_eq!(nulls["total"], 3);
        if direction == 1 {
            everything.extend(ids(&nulls));
        } else {
            everything.splice(0..0, ids(&nulls));
        }
        let mut paged = Vec::new();
        let mut query = json!({"$sort": {"age": direction}, "$limit": 2, "age": {"$nin": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]}});
        for _ in 0..10 {
            let page = list(query.clone()).await;
            paged.extend(ids(&page));
            match page.get("next") {
                Some(next) => query["$after"] = next.clone(),
                None => break,
            }
        }
        assert_eq!(paged, everything, "direction {direction}");
    }
    let page = list(json!({"$sort": {"age": 1, "name": 1}, "$limit": 2})).await;
    assert!(
        page.get("next").is_none(),
        "no cursor for two sort keys: {page}"
    );

    // Bad queries are refused with a reason, and change nothing.
    for (query, words) in [
        (
            json!({"$limit": 1_000_000_000}),
            "$limit must be an integer from 0 to 20",
        ),
        (json!({"$limit": 21}), "$limit must be"),
        (json!({"wings": 2}), "wings"),
        (json!({"name; DROP TABLE creature; --": 1}), "DROP TABLE"),
        (json!({"age": {"$regex": ".*"}}), "unknown operator"),
        (json!({"$where": "1=1"}), "$where"),
        (json!({"age": "old"}), "age"),
        (json!({"$sort": {"age": "desc"}}), "$sort"),
        (json!({"$after": "not-a-cursor"}), "cursor"),
    ] {
        let error = err(&c, "creature/list", query.clone()).await;
        assert_eq!(error.name, "BadRequest", "{query}: {error:?}");
        assert!(error.message.contains(words), "{query}: {error:?}");
    }
    assert_eq!(list(json!({})).await["total"], 33);
}

async fn validation_and_bad_input(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (c, _events) = app.client().await;
    let invalid = |error: &ApiError| -> Vec<(String, String)> {
        assert_eq!(error.name, "ValidationError", "{error:?}");
        assert!(!error.message.is_empty());
        error.extra["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                (
                    e["attribute"].as_str().unwrap().to_owned(),
                    e["property"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, p: &str| (a.to_owned(), p.to_owned());

    let error = err(&c, "creature/create", json!({"name": 5})).await;
    assert_eq!(invalid(&error), [pair("type", "name")]);
    let detail = &error.extra["errors"][0];
    assert_eq!(
        (detail["expected"].clone(), detail["actual"].clone()),
        (json!("string"), json!(5))
    );

    let error = err(&c, "creature/create", json!({})).await;
    assert_eq!(invalid(&error), [pair("required", "name")]);
    let error = err(&c, "creature/create", json!({"name": "x", "age": -1})).await;
    assert_eq!(invalid(&error), [pair("minimum", "age")]);
    assert_eq!(error.extra["errors"][0]["expected"], 0.0);
    assert_eq!(error.extra["errors"][0]["actual"], -1);
    let error = err(&c, "creature/create", json!({"name": "x", "wings": 2})).await;
    assert_eq!(invalid(&error), [pair("additionalProperties", "wings")]);
    let error = err(&c, "creature/create", json!({"age": "old"})).await;
    let mut all = invalid(&error);
    all.sort();
    assert_eq!(all, [pair("required", "name"), pair("type", "age")]);
    let error = err(&c, "creature/create", json!({"name": "x", "age": 1.5})).await;
    assert_eq!(invalid(&error), [pair("type", "age")]);

    for (event, data, words) in [
        ("creature/create", json!([1, 2]), "must be an object"),
        ("creature/create", json!("Smaug"), "must be an object"),
        (
            "creature/get",
            json!({"id": "1 OR 1=1"}),
            "positive integer",
        ),
        ("creature/get", json!({"id": -3}), "positive integer"),
        ("creature/get", json!({}), "positive integer"),
        (
            "creature/patch",
            json!({"id": 1, "version": "one"}),
            "version",
        ),
    ] {
        let error = err(&c, event, data.clone()).await;
        assert_eq!(error.name, "BadRequest", "{event} {data}");
        assert!(error.message.contains(words), "{event} {data}: {error:?}");
    }

    // SQL metacharacters are data like any other.
    let names = [
        "Robert'); DROP TABLE creature;--",
        "\" OR \"1\"=\"1",
        "back\\slash; $1 ? %",
        "名前 🐉",
    ];
    for name in names {
        let created = ok(&c, "creature/create", json!({ "name": name })).await;
        assert_eq!(created["name"], name);
        let found = ok(&c, "creature/list", json!({ "name": name })).await;
        assert_eq!(found["data"], json!([created]), "{name}");
    }
    assert_eq!(
        ok(&c, "creature/list", json!({})).await["total"],
        names.len()
    );

    // A message nested 1,000 deep is answered with an error, and the connection goes on.
    let mut ws = handshaken(&app.server.url()).await;
    let deep = format!("{}1{}", r#"{"a":"#.repeat(1000), "}".repeat(1000));
    let frame =
        format!(r#"{{"event":"creature/create","data":{{"name":"deep","age":{deep}}},"cid":2}}"#);
    send(&mut ws, &frame).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 2, "{reply}");
    assert_eq!(reply["error"]["name"], "InvalidMessageError", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128 levels"),
        "{reply}"
    );
    send(&mut ws, &echo(3, json!("still here"))).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 3, "data": "still here"})
    );
    assert_eq!(
        ok(&c, "creature/list", json!({})).await["total"],
        names.len()
    );
}

/// The names every record has (`id`, `version`, `ctime`, `mtime`, `owner`, `extra`) are the
/// server's: a payload naming one is a `ValidationError` naming it, except `id` as the address
/// of `get`, `update`, `patch` and `destroy`, and `version` as the one `update` and `patch`
/// read. Lists take them as filters and sort keys.
async fn names_the_server_keeps_are_refused(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (c, _events) = app.client().await;
    let (watcher, mut events) = app.client().await;
    let smaug = ok(&c, "creature/create", json!({"name": "Smaug"})).await;
    let item = format!("/creature/{}", id(&smaug));
    watcher.subscribe("creature").await.unwrap();
    let refused = |event: &str, data: Value, field: &str| {
        let c = &c;
        let field = field.to_owned();
        let event = event.to_owned();
        async move {
            let error = err(c, &event, data.clone()).await;
            assert_eq!(error.name, "ValidationError", "{event} {data}: {error:?}");
            let errors = error.extra["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{event} {data}: {error:?}");
            assert_eq!(
                (&errors[0]["attribute"], &errors[0]["property"]),
                (&json!("readOnly"), &json!(field)),
                "{event} {data}: {error:?}"
            );
            assert!(
                error
                    .message
                    .contains(&format!("{field} is set by the server")),
                "{event} {data}: {error:?}"
            );
        }
    };
    for field in ["id", "version", "ctime", "mtime", "owner", "extra"] {
        let with = |mut data: Value| {
            data[field] = json!(7);
            data
        };
        refused("creature/create", with(json!({"name": "x"})), field).await;
        refused("POST /creature", with(json!({"name": "x"})), field).await;
        refused(
            "creature",
            json!({"action": "create", "payload": with(json!({"name": "x"}))}),
            field,
        )
        .await;
        if field == "id" {
            continue;
        }
        for event in ["creature/get", "creature/destroy"] {
            refused(event, with(json!({"id": id(&smaug)})), field).await;
        }
        if field == "version" {
            continue;
        }
        for event in ["creature/update", "creature/patch"] {
            let data = with(json!({"id": id(&smaug), "version": 1, "name": "Glaurung"}));
            refused(event, data, field).await;
        }
        let body = with(json!({"version": 1, "name": "Glaurung"}));
        refused(&format!("PATCH {item}"), body, field).await;
    }
    // Nothing was created, changed or announced.
    assert_eq!(
        ok(&c, "creature/get", json!({"id": id(&smaug)})).await,
        smaug
    );
    assert_eq!(ok(&c, "creature/list", json!({})).await["total"], 1);
    no_publication(&mut events).await;

    // Every failure at once.
    let error = err(&c, "creature/create", json!({"name": 5, "ctime": 1})).await;
    let mut failures: Vec<&str> = error.extra["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["property"].as_str().unwrap())
        .collect();
    failures.sort_unstable();
    assert_eq!(failures, ["ctime", "name"], "{error:?}");

    // The addresses and versions the operations take still work.
    let query = json!({"id": id(&smaug), "version": 1, "$sort": {"mtime": -1}});
    assert_eq!(ok(&c, "creature/list", query).await["data"], json!([smaug]));
    let patched = ok(
        &c,
        "creature/patch",
        json!({"id": id(&smaug), "version": 1, "age": 171}),
    )
    .await;
    assert_eq!(patched["version"], 2);
    ok(&c, "creature/destroy", json!({"id": id(&smaug)})).await;
}

const GADGETS: &str = r#"
[[resource]]
name = "gadget"

[resource.fields]
code = { type = "string", required = true, min_length = 2, max_length = 5, pattern = "^[A-Z]+$" }
count = { type = "integer", min = 0, max = 10, default = 1 }
weight = { type = "number", min = 0.5 }
active = { type = "boolean", default = true }
seen = { type = "timestamp" }
tags = { type = "array", max_length = 3 }
spec = { type = "object" }
kind = { type = "enum", values = ["tool", "toy"], default = "tool" }
email = { type = "string", format = "email" }
site = { type = "string", format = "url" }

[[resource]]
name = "bag"
extra_fields = true
require_version = false

[resource.fields]
label = { type = "string" }
"#;

async fn field_types_constraints_and_defaults(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let app = serve(&db, Some(GADGETS), |b| b).await.unwrap();
    let (c, _events) = app.client().await;
    let full = json!({
        "code": "AB",
        "count": 10,
        "weight": 2.25,
        "active": false,
        "seen": "2026-01-02T03:04:05Z",
        "tags": ["a", 1, {"b": null}],
        "spec": {"nested": {"list": [1, 2.5, "x", true, null]}},
        "kind": "toy",
        "email": "ann@example.com",
        "site": "https://example.com/x?y=1",
    });
    let created = ok(&c, "gadget/create", full.clone()).await;
    for (key, value) in full.as_object().unwrap() {
        if key == "seen" {
            assert_eq!(
                created["seen"], 1_767_323_045_000_i64,
                "timestamps are stored as ms"
            );
        } else {
            assert_eq!(&created[key], value, "{key}");
        }
    }
    assert_eq!(
        ok(&c, "gadget/get", json!({"id": id(&created)})).await,
        created
    );
    // Booleans, numbers and timestamps filter by value.
    for query in [
        json!({"active": false}),
        json!({"weight": {"$gt": 2}}),
        json!({"seen": {"$gte": 1_767_323_045_000_i64}}),
        json!({"kind": "toy"}),
    ] {
        assert_eq!(
            ok(&c, "gadget/list", query.clone()).await["total"],
            1,
            "{query}"
        );
    }

    let defaults = ok(&c, "gadget/create", json!({"code": "XY"})).await;
    assert_eq!(defaults["count"], 1);
    assert_eq!(defaults["active"], true);
    assert_eq!(defaults["kind"], "tool");
    assert!(absent(&defaults, "weight"));

    for (fields, attribute, property) in [
        (json!({"code": "A"}), "minLength", "code"),
        (json!({"code": "ABCDEF"}), "maxLength", "code"),
        (json!({"code": "ab"}), "pattern", "code"),
        (json!({"code": "AB", "count": 11}), "maximum", "count"),
        (json!({"code": "AB", "weight": 0.1}), "minimum", "weight"),
        (json!({"code": "AB", "active": "yes"}), "type", "active"),
        (json!({"code": "AB", "seen": "yesterday"}), "type", "seen"),
        (
            json!({"code": "AB", "tags": [1, 2, 3, 4]}),
            "maxLength",
            "tags",
        ),
        (json!({"code": "AB", "tags": "a,b"}), "type", "tags"),
        (json!({"code": "AB", "spec": [1]}), "type", "spec"),
        (json!({"code": "AB", "kind": "weapon"}), "enum", "kind"),
        (
            json!({"code": "AB", "email": "not-an-email"}),
            "format",
            "email",
        ),
        (
            json!({"code": "AB", "site": "example.com"}),
            "format",
            "site",
        ),
    ] {
        let error = err(&c, "gadget/create", fields.clone()).await;
        assert_eq!(error.name, "ValidationError", "{fields}");
        let first = &error.extra["errors"][0];
        assert_eq!(
            (first["attribute"].as_str(), first["property"].as_str()),
            (Some(attribute), Some(property)),
            "{fields}: {error:?}"
        );
    }

    // A resource with extra fields keeps what it does not declare.
    let bag = ok(
        &c,
        "bag/create",
        json!({"label": "misc", "colour": "red", "size": {"w": 2}}),
    )
    .await;
    assert_eq!(bag["colour"], "red");
    assert_eq!(bag["size"], json!({"w": 2}));
    let bag = ok(&c, "bag/patch", json!({"id": id(&bag), "colour": "blue"})).await;
    assert_eq!(
        (
            bag["label"].clone(),
            bag["colour"].clone(),
            bag["size"].clone()
        ),
        (json!("misc"), json!("blue"), json!({"w": 2}))
    );
    assert_eq!(bag["version"], 2, "versions count even when not required");
    assert_eq!(ok(&c, "bag/get", json!({"id": id(&bag)})).await, bag);
}

async fn children_and_cascading_destroy(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (c, _events) = app.client().await;
    let (watcher, mut events) = app.client().await;
    watcher.subscribe("song").await.unwrap();
    watcher.subscribe("album").await.unwrap();

    let abbey = ok(&c, "album/create", json!({"title": "Abbey Road"})).await;
    let help = ok(&c, "album/create", json!({"title": "Help!"})).await;
    let songs_of = |album: &Value| format!("/album/{}/song", id(album));
    let s1 = ok(
        &c,
        &format!("POST {}", songs_of(&abbey)),
        json!({"title": "Come Together"}),
    )
    .await;
    assert_eq!(s1["album_id"], abbey["id"]);
    let s2 = ok(
        &c,
        "song/create",
        json!({"title": "Something", "album_id": id(&abbey)}),
    )
    .await;
    let s3 = ok(
        &c,
        "album",
        json!({"action": "createSong", "payload": {"id": id(&help), "title": "Yesterday"}}),
    )
    .await;
    assert_eq!(s3["album_id"], help["id"]);
    for _ in 0..2 {
        publication(&mut events, "album").await;
    }
    for _ in 0..3 {
        assert_eq!(publication(&mut events, "song").await["event"], "created");
    }

    let page = ok(
        &c,
        &format!("GET {}", songs_of(&abbey)),
        json!({"$sort": {"id": 1}}),
    )
    .await;
    assert_eq!(page["data"], json!([s1, s2]));
    assert_eq!(page["total"], 2);
    let page = ok(&c, "song/list", json!({"album_id": id(&help)})).await;
    assert_eq!(page["data"], json!([s3]));

    // The parent must exist.
    let missing = err(&c, "POST /album/999999/song", json!({"title": "Lost"})).await;
    assert_eq!(missing.name, "NotFound");
    let missing = err(
        &c,
        "song/create",
        json!({"title": "Lost", "album_id": 999_999}),
    )
    .await;
    assert_eq!(missing.name, "NotFound", "{missing:?}");
    let error = err(&c, "song/create", json!({"title": "Orphan"})).await;
    assert_eq!(error.name, "BadRequest");
    assert!(error.message.contains("album_id"), "{error:?}");
    let missing = err(&c, "GET /album/999999/song", json!({})).await;
    assert_eq!(missing.name, "NotFound");

    // A song cannot be moved: naming its parent column in a patch or an update is refused,
    // and nothing changes or is announced.
    for (event, album) in [
        ("song/patch", id(&help)),
        ("song/update", id(&help)),
        ("song/patch", id(&abbey)),
    ] {
        let error = err(
            &c,
            event,
            json!({"id": id(&s1), "version": 1, "album_id": album, "title": "Come Together (2019 Mix)"}),
        )
        .await;
        assert_eq!(error.name, "ValidationError", "{event}: {error:?}");
        assert_eq!(
            error.extra["errors"][0]["property"], "album_id",
            "{error:?}"
        );
        assert_eq!(
            error.extra["errors"][0]["attribute"], "readOnly",
            "{error:?}"
        );
        assert!(
            error.message.contains("album_id cannot be changed"),
            "{event}: {error:?}"
        );
    }
    assert_eq!(ok(&c, "song/get", json!({"id": id(&s1)})).await, s1);
    no_publication(&mut events).await;

    // Destroying an album takes its songs with it, and says so.
    ok(&c, "album/destroy", json!({"id": id(&abbey)})).await;
    let mut destroyed = Vec::new();
    for _ in 0..2 {
        let event = publication(&mut events, "song").await;
        assert_eq!(event["event"], "destroyed");
        destroyed.push(id(&event["data"]));
    }
    destroyed.sort_unstable();
    assert_eq!(destroyed, [id(&s1), id(&s2)]);
    let event = publication(&mut events, "album").await;
    assert_eq!(event, json!({"event": "destroyed", "data": abbey}));
    for song in [&s1, &s2] {
        assert_eq!(
            err(&c, "song/get", json!({"id": id(song)})).await.name,
            "NotFound"
        );
    }
    assert_eq!(ok(&c, "song/get", json!({"id": id(&s3)})).await, s3);
    assert_eq!(ok(&c, "song/list", json!({})).await["total"], 1);
}

async fn live_events_reach_other_clients(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (writer, _writer_events) = app.client().await;
    let (reader, mut events) = app.client().await;
    reader.subscribe("creature").await.unwrap();

    let created = ok(&writer, "creature/create", json!({"name": "Scatha"})).await;
    assert_eq!(
        publication(&mut events, "creature").await,
        json!({"event": "created", "data": created})
    );
    let item = format!("creature/{}", id(&created));
    reader.subscribe(&item).await.unwrap();
    let patched = ok(
        &writer,
        "creature/patch",
        json!({"id": id(&created), "version": 1, "age": 3}),
    )
    .await;
    let expected = json!({"event": "patched", "data": patched});
    assert_eq!(publication(&mut events, &item).await, expected);
    assert_eq!(publication(&mut events, "creature").await, expected);
    let updated = ok(
        &writer,
        "creature/update",
        json!({"id": id(&created), "version": 2, "name": "Scatha the Worm"}),
    )
    .await;
    assert_eq!(
        publication(&mut events, &item).await,
        json!({"event": "updated", "data": updated})
    );
    assert_eq!(
        publication(&mut events, "creature").await,
        json!({"event": "updated", "data": updated})
    );
    let destroyed = ok(&writer, "creature/destroy", json!({"id": id(&created)})).await;
    let expected = json!({"event": "destroyed", "data": destroyed});
    assert_eq!(publication(&mut events, &item).await, expected);
    assert_eq!(publication(&mut events, "creature").await, expected);

    // Refused writes announce nothing; clients cannot forge changes.
    err(&writer, "creature/create", json!({"age": 1})).await;
    err(
        &writer,
        "creature/patch",
        json!({"id": id(&created), "version": 9, "age": 1}),
    )
    .await;
    let forged = writer
        .publish("creature", json!({"event": "created", "data": {"id": 1}}))
        .await;
    assert!(matches!(&forged, Err(ClientError::Remote(_))), "{forged:?}");
    no_publication(&mut events).await;
}

const PRIVATE: &str = r#"
[[resource]]
name = "note"
owner = "username"
read = "owner"
write = "owner"

[resource.fields]
text = { type = "string", required = true }

[[resource]]
name = "notice"
read = "authenticated"
write = { username = "root" }

[resource.fields]
text = { type = "string", required = true }
"#;

async fn access_rules_and_owners(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let app = serve(&db, Some(PRIVATE), |b| b).await.unwrap();
    let (anonymous, _anonymous_events) = app.client().await;
    let (ann, mut ann_events) = app.user("ann").await;
    let (ann_elsewhere, _) = app.user("ann").await;
    let (bob, _bob_events) = app.user("bob").await;
    let (root, _root_events) = app.user("root").await;

    for (event, data) in [
        ("note/create", json!({"text": "hi"})),
        ("note/list", json!({})),
        ("notice/list", json!({})),
    ] {
        let error = err(&anonymous, event, data).await;
        assert_eq!(error.name, "AuthError", "{event}: {error:?}");
    }

    ann.subscribe("note/owner/ann").await.unwrap();
    let mine = ok(&ann, "note/create", json!({"text": "ann's"})).await;
    assert_eq!(mine["owner"], "ann");
    let forged = err(
        &bob,
        "note/create",
        json!({"text": "bob's", "owner": "ann"}),
    )
    .await;
    assert_eq!(
        (forged.name.as_ref(), &forged.extra["errors"][0]["property"]),
        ("ValidationError", &json!("owner")),
        "the owner comes from the token, never from the payload: {forged:?}"
    );
    let bobs = ok(&bob, "note/create", json!({"text": "bob's"})).await;
    assert_eq!(bobs["owner"], "bob");

    // Others' records do not exist for them.
    for (event, data) in [
        ("note/get", json!({"id": id(&mine)})),
        (
            "note/patch",
            json!({"id": id(&mine), "version": 1, "text": "x"}),
        ),
        (
            "note/update",
            json!({"id": id(&mine), "version": 1, "text": "x"}),
        ),
        ("note/destroy", json!({"id": id(&mine)})),
    ] {
        assert_eq!(err(&bob, event, data).await.name, "NotFound", "{event}");
    }
    let page = ok(&bob, "note/list", json!({})).await;
    assert_eq!(page["data"], json!([bobs]));
    assert_eq!(page["total"], 1);
    assert_eq!(
        ok(&ann, "note/list", json!({})).await["data"],
        json!([mine])
    );
    assert_eq!(ok(&ann, "note/get", json!({"id": id(&mine)})).await, mine);

    // Channels follow the same rules.
    for channel in [
        format!("note/{}", id(&mine)),
        "note/owner/ann".to_owned(),
        "note".to_owned(),
    ] {
        assert!(
            bob.subscribe(&channel).await.is_err(),
            "bob subscribed to {channel}"
        );
    }
    bob.subscribe(&format!("note/{}", id(&bobs))).await.unwrap();
    assert_eq!(
        publication(&mut ann_events, "note/owner/ann").await,
        json!({"event": "created", "data": mine})
    );
    let patched = ok(
        &ann_elsewhere,
        "note/patch",
        json!({"id": id(&mine), "version": 1, "text": "edited"}),
    )
    .await;
    assert_eq!(
        publication(&mut ann_events, "note/owner/ann").await,
        json!({"event": "patched", "data": patched})
    );

    // A claim rule: everyone signed in reads notices, only root writes them.
    let error = err(&ann, "notice/create", json!({"text": "hello"})).await;
    assert_eq!(error.name, "Forbidden", "{error:?}");
    let notice = ok(&root, "notice/create", json!({"text": "hello"})).await;
    assert_eq!(
        ok(&ann, "notice/list", json!({})).await["data"],
        json!([notice])
    );
    assert!(anonymous.subscribe("notice").await.is_err());
    ann.subscribe("notice").await.unwrap();
}

const WITH_REMOTES: &str = r#"
[[resource]]
name = "creature"

[resource.fields]
name = { type = "string", required = true }
age = { type = "integer", min = 0 }

[[resource.remote]]
name = "shout"
exec = ["python3", "-c", "import json, sys; d = json.load(sys.stdin); print(json.dumps({'shout': d['text'].upper()}))"]

[[resource.remote]]
name = "crash"
exec = ["python3", "-c", "import sys; print('no', file=sys.stderr); sys.exit(3)"]

[[resource.remote]]
name = "dawdle"
exec = ["python3", "-c", "import time; time.sleep(5)"]
timeout_ms = 300
"#;

async fn hooks_and_remote_methods(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let app = serve(&db, Some(WITH_REMOTES), |b| {
        b.before("creature", Operation::Create, |mut hook: HookContext| async move {
            if let Some(name) = hook.data.get("name").and_then(Value::as_str) {
                hook.data["name"] = json!(name.trim().to_uppercase());
            }
            Ok(Before::Continue(hook))
        })
        .before("creature", Operation::Destroy, |hook: HookContext| async move {
            if hook.ctx.claims().is_none() {
                return Err(ApiError::new("Forbidden", "sign in to destroy creatures"));
            }
            Ok(Before::Continue(hook))
        })
        .before("creature", Operation::Get, |hook: HookContext| async move {
            if hook.data["id"] == json!(999_999) {
                return Ok(Before::Respond(json!({"id": 999_999, "name": "virtual"})));
            }
            Ok(Before::Continue(hook))
        })
        .after("creature", Operation::Get, |hook: HookContext, mut record: Value| async move {
            let viewer = hook
                .ctx
                .claims()
                .and_then(|claims| claims.get("username").cloned());
            record["viewer"] = viewer.unwrap_or(Value::Null);
            Ok(record)
        })
        .remote("creature", "greet", |ctx, data: Value| async move {
            let who = ctx
                .claims()
                .and_then(|claims| claims.get("username").cloned())
                .unwrap_or(json!("stranger"));
            Ok(json!({"greeting": format!("hello {}", data["to"].as_str().unwrap_or("?")), "from": who}))
        })
    })
    .await
    .unwrap();
    let (c, _events) = app.client().await;

    let created = ok(&c, "creature/create", json!({"name": "  smaug "})).await;
    assert_eq!(created["name"], "SMAUG", "the before hook rewrote the data");
    let fetched = ok(&c, "creature/get", json!({"id": id(&created)})).await;
    assert_eq!(fetched["name"], "SMAUG");
    assert_eq!(fetched["viewer"], Value::Null);
    assert_eq!(
        ok(&c, "creature/get", json!({"id": 999_999})).await,
        json!({"id": 999_999, "name": "virtual"}),
        "the before hook answered itself"
    );

    let vetoed = err(&c, "creature/destroy", json!({"id": id(&created)})).await;
    assert_eq!(vetoed.name, "Forbidden");
    ok(&c, "creature/get", json!({"id": id(&created)})).await;
    ok(&c, "login", json!({"username": "ann"})).await;
    assert_eq!(
        ok(&c, "creature/get", json!({"id": id(&created)})).await["viewer"],
        "ann",
        "hooks see the caller's claims"
    );
    ok(&c, "creature/destroy", json!({"id": id(&created)})).await;

    // Rust remote methods, by name and as sockful actions.
    assert_eq!(
        ok(&c, "creature/greet", json!({"to": "bob"})).await,
        json!({"greeting": "hello bob", "from": "ann"})
    );
    assert_eq!(
        ok(
            &c,
            "creature",
            json!({"action": "greet", "payload": {"to": "eve"}})
        )
        .await["greeting"],
        "hello eve"
    );

    // Command remote methods: stdin JSON in, stdout JSON out; failures are errors.
    assert_eq!(
        ok(&c, "creature/shout", json!({"text": "fire"})).await,
        json!({"shout": "FIRE"})
    );
    assert_eq!(
        ok(
            &c,
            "creature",
            json!({"action": "shout", "payload": {"text": "wings"}})
        )
        .await,
        json!({"shout": "WINGS"})
    );
    let crash = err(&c, "creature/crash", json!({})).await;
    assert_eq!(crash.name, "RemoteMethodError");
    assert_eq!(crash.extra["exitCode"], 3);
    assert!(
        crash.message.contains("no"),
        "the command's stderr: {crash:?}"
    );
    let started = std::time::Instant::now();
    let slow = err(&c, "creature/dawdle", json!({})).await;
    assert!(slow.message.contains("300"), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err(&c, "creature/fly", json!({})).await.name, "NotFound");
}

/// A store whose writes to `song` answer [`SlowSongs::PAUSE`] after they commit, as on a busy
/// server: a write racing another then commits first but returns last.
#[derive(Debug)]
struct SlowSongs(SqlStore);

impl SlowSongs {
    const PAUSE: Duration = Duration::from_millis(600);

    async fn after<T>(def: &ResourceDef, result: T) -> T {
        if def.name == "song" {
            tokio::time::sleep(Self::PAUSE).await;
        }
        result
    }
}

impl Store for SlowSongs {
    fn prepare<'a>(&'a self, defs: &'a [ResourceDef]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.prepare(defs)
    }

    fn create<'a>(
        &'a self,
        def: &'a ResourceDef,
        fields: &'a Record,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move { Self::after(def, self.0.create(def, fields, scope).await).await })
    }

    fn get<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        self.0.get(def, id, scope)
    }

    fn list<'a>(
        &'a self,
        def: &'a ResourceDef,
        query: &'a Query,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<(Vec<Record>, u64), StoreError>> {
        self.0.list(def, query, scope)
    }

    fn update<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        expected_version: Option<i64>,
        scope: &'a Scope,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(async move {
            let result = self.0.update(def, id, expected_version, scope, change);
            Self::after(def, result.await).await
        })
    }

    fn destroy<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
        descendants: &'a [&'a ResourceDef],
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>> {
        self.0.destroy(def, id, scope, descendants)
    }
}

/// An album's `destroy` racing a `patch` or a `create` of one of its songs is announced in
/// the order the two committed: the song's change, then its removal (or, when the destroy
/// commits first, the song's write fails and only the removal is announced).
async fn a_cascade_is_announced_after_the_child_writes_it_follows(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let config = config(&db, None);
    let store = SqlStore::connect(&config.storage.url, config.storage.max_connections)
        .await
        .expect("store");
    let resources = ResourcesBuilder::from_declarations(&config.resources, &config.storage)
        .open(SlowSongs(store))
        .await
        .expect("resources");
    let app = serve_resources(&config, resources).await;
    let (writer, _writer_events) = app.client().await;
    let (destroyer, _destroyer_events) = app.client().await;
    let (watcher, mut events) = app.client().await;
    watcher.subscribe("song").await.unwrap();

    let album = ok(&writer, "album/create", json!({"title": "Revolver"})).await;
    let song = ok(
        &writer,
        "song/create",
        json!({"album_id": id(&album), "title": "Taxman"}),
    )
    .await;
    assert_eq!(publication(&mut events, "song").await["event"], "created");
    let patch = json!({"id": id(&song), "version": 1, "title": "Eleanor Rigby"});
    let album = id(&album);
    let second = ok(&writer, "album/create", json!({"title": "Rubber Soul"})).await;
    let create = json!({"album_id": id(&second), "title": "Michelle"});

    for (write, data, album, event) in [
        ("song/patch", patch, album, "patched"),
        ("song/create", create, id(&second), "created"),
    ] {
        let written = {
            let writer = writer.clone();
            tokio::spawn(async move { call(&writer, write, data).await })
        };
        // The song's write has committed and is still on its way back when the album goes.
        tokio::time::sleep(SlowSongs::PAUSE / 3).await;
        ok(&destroyer, "album/destroy", json!({ "id": album })).await;
        let written = written.await.unwrap();
        let mut seen = Vec::new();
        if let Ok(record) = &written {
            let first = publication(&mut events, "song").await;
            assert_eq!(
                (first["event"].as_str(), &first["data"]),
                (Some(event), record)
            );
            seen.push(event);
        } else {
            assert_eq!(written.unwrap_err().name, "NotFound", "{write}");
        }
        let last = publication(&mut events, "song").await;
        assert_eq!(last["event"], "destroyed", "{write}: after {seen:?}");
        no_publication(&mut events).await;
    }
}

async fn concurrent_updates_conflict(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(app.client().await.0);
    }
    let created = ok(
        &clients[0],
        "creature/create",
        json!({"name": "Contested", "age": 0}),
    )
    .await;
    let creature_id = id(&created);
    let mut version = 1;
    for round in 0..10 {
        let attempts = clients.iter().enumerate().map(|(n, client)| {
            let client = client.clone();
            async move {
                call(
                    &client,
                    "creature/patch",
                    json!({"id": creature_id, "version": version, "age": round * 10 + n}),
                )
                .await
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let winners: Vec<&Value> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for loser in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(loser.name, "Conflict", "{loser:?}");
            assert_eq!(loser.extra["expected"], version);
            assert_eq!(loser.extra["actual"], version + 1);
        }
        version += 1;
        let stored = ok(&clients[0], "creature/get", json!({"id": creature_id})).await;
        assert_eq!(stored["version"], version);
        assert_eq!(
            &stored["age"], &winners[0]["age"],
            "the winner's change is the one kept"
        );
    }
}

async fn ctproto_clients_reach_resources(backend: Backend) {
    let Some((app, _db)) = demo(backend).await else {
        return;
    };
    let (ct, mut updates) = CtClient::connect(&app.ct_url(), json!({"username": "ann"}))
        .await
        .unwrap();
    let send = |kind: &'static str, payload: Value| {
        let ct = ct.clone();
        async move {
            match ct.send(kind, payload).await {
                Ok(reply) => Ok(reply.unwrap_or(Value::Null)),
                Err(ClientError::Remote(error)) => Err(error),
                Err(other) => panic!("{kind}: {other}"),
            }
        }
    };
    ct.subscribe("creature").await.unwrap();
    let created = send("creature/create", json!({"name": "Chrysophylax"}))
        .await
        .unwrap();
    assert_eq!(created["version"], 1);
    let update = next_update(&mut updates).await;
    assert_eq!(update.kind, "#publish");
    assert_eq!(
        update.payload,
        Some(json!({"channel": "creature", "data": {"event": "created", "data": created}}))
    );
    let creature_id = id(&created);
    assert_eq!(
        send("creature/get", json!({"id": creature_id}))
            .await
            .unwrap(),
        created
    );
    assert_eq!(send("creature/list", json!({})).await.unwrap()["total"], 1);
    let patched = send(
        "creature/patch",
        json!({"id": creature_id, "version": 1, "age": 40}),
    )
    .await
    .unwrap();
    assert_eq!(patched["age"], 40);
    let updated = send(
        "creature/update",
        json!({"id": creature_id, "version": 2, "name": "Chrysophylax Dives"}),
    )
    .await
    .unwrap();
    assert_eq!(updated["version"], 3);
    assert_eq!(
        send("creature", json!({"action": "all", "payload": {}}))
            .await
            .unwrap(),
        json!([updated])
    );
    assert_eq!(
        send("GET /creature", json!({"age": {"$gt": 1}}))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))["total"],
        0,
        "update replaced the age away"
    );

    let invalid = send("creature/create", json!({"name": 1}))
        .await
        .unwrap_err();
    assert_eq!(invalid.name, "ValidationError");
    let conflict = send(
        "creature/patch",
        json!({"id": creature_id, "version": 1, "age": 1}),
    )
    .await
    .unwrap_err();
    assert_eq!(conflict.name, "Conflict");
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let too_deep = send("creature/create", json!({"name": "deep", "age": deep}))
        .await
        .unwrap_err();
    assert!(too_deep.message.contains("128 levels"), "{too_deep:?}");

    let destroyed = send("creature/destroy", json!({"id": creature_id}))
        .await
        .unwrap();
    assert_eq!(destroyed, updated);
    assert_eq!(
        send("creature/get", json!({"id": creature_id}))
            .await
            .unwrap_err()
            .name,
        "NotFound"
    );
}

const CATALOGUE_V1: &str = r#"
[[resource]]
name = "item"

[resource.fields]
title = { type = "string", required = true }
"#;

const CATALOGUE_V2: &str = r#"
[[resource]]
name = "item"

[resource.fields]
title = { type = "string", required = true }
price = { type = "number", min = 0 }
"#;

const CATALOGUE_WITHOUT_TITLE: &str = r#"
[[resource]]
name = "item"

[resource.fields]
price = { type = "number", min = 0 }
"#;

const CATALOGUE_TITLE_AS_NUMBER: &str = r#"
[[resource]]
name = "item"

[resource.fields]
title = { type = "number" }
price = { type = "number", min = 0 }
"#;

async fn migrations_add_fields_and_refuse_losses(backend: Backend) {
    let Some(db) = db(backend).await else {
        return;
    };
    let app = serve(&db, Some(CATALOGUE_V1), |b| b).await.unwrap();
    let (c, _events) = app.client().await;
    let old = ok(&c, "item/create", json!({"title": "Lamp"})).await;
    drop(c);
    app.server.shutdown().await;

    // Adding a field works on the existing table; old records lack it.
    let app = serve(&db, Some(CATALOGUE_V2), |b| b).await.unwrap();
    let (c, _events) = app.client().await;
    let again = ok(&c, "item/get", json!({"id": id(&old)})).await;
    assert_eq!(again["title"], "Lamp");
    assert!(absent(&again, "price"));
    let new = ok(&c, "item/create", json!({"title": "Rug", "price": 9.5})).await;
    assert_eq!(new["price"], 9.5);
    drop(c);
    app.server.shutdown().await;

    // Changes that would lose data are refused, saying what and why.
    for (declaration, words) in [
        (CATALOGUE_WITHOUT_TITLE, "title"),
        (CATALOGUE_TITLE_AS_NUMBER, "title"),
    ] {
        let refused = match serve(&db, Some(declaration), |b| b).await {
            Ok(_) => panic!("a destructive change was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(
            refused.contains("item") && refused.contains(words),
            "{refused}"
        );
    }

    // The data is still there for the declaration that fits it.
    let app = serve(&db, Some(CATALOGUE_V2), |b| b).await.unwrap();
    let (c, _events) = app.client().await;
    assert_eq!(ok(&c, "item/list", json!({})).await["total"], 2);
}
