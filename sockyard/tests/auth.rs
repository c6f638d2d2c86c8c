//! Auth over real sockets: tokens in the handshake and in `#authenticate`, `login`/`whoami`,
//! expiry while connected, access rules, RS256/ES256 keys, and the middleware stages.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sockyard::auth::{Authenticator, Claims, KeySource};
use sockyard::config::{AuthAlgorithm, AuthConfig};
use sockyard::exchange::Outbound;
use sockyard::stages::{HandshakeRejection, Stages, UpgradeRejection};
use sockyard::{ApiError, Config, Server};
use sockyard_test_support::router::test_router;
use sockyard_test_support::server::{start_built, start_with};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "auth-test-key";

fn config() -> Config {
    let mut config = Config::default();
    config.auth.key = KEY.to_owned();
    config
}

fn claims(value: Value) -> Claims {
    value.as_object().unwrap().clone()
}

fn now() -> u64 {
    sockyard::auth::now_seconds()
}

fn sign(key: &str, value: Value) -> String {
    Authenticator::hs256(key.as_bytes(), Duration::from_secs(3600))
        .sign(claims(value))
        .unwrap()
}

async fn handshake_with(url: &str, token: &str) -> (Ws, Value) {
    let mut ws = connect(url).await;
    let frame = json!({"event": "#handshake", "data": {"authToken": token}, "cid": 1});
    send(&mut ws, &frame.to_string()).await;
    let reply = next_json(&mut ws).await;
    (ws, reply)
}

async fn whoami(ws: &mut Ws, cid: u64) -> Value {
    send(ws, &json!({"event": "whoami", "cid": cid}).to_string()).await;
    next_json(ws).await
}

#[tokio::test]
async fn a_good_token_in_the_handshake_authenticates() {
    let server = start_with(config()).await;
    let token = sign(KEY, json!({"username": "ann"}));
    let (mut ws, reply) = handshake_with(&server.url(), &token).await;
    assert_eq!(reply["data"]["isAuthenticated"], true);
    assert!(reply["data"].get("authError").is_none());
    let me = whoami(&mut ws, 2).await;
    assert_eq!(me["data"]["username"], "ann");
}

#[tokio::test]
async fn bad_tokens_in_the_handshake_are_soft_errors() {
    let server = start_with(config()).await;
    let header = |alg: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"alg": alg, "typ": "JWT"}).to_string())
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"username": "mallory"}).to_string());
    let cases = [
        (
            sign(KEY, json!({"username": "ann", "exp": now() - 10})),
            "AuthTokenExpiredError",
            "jwt expired",
        ),
        (
            sign("another-key", json!({"username": "ann"})),
            "AuthTokenInvalidError",
            "invalid signature",
        ),
        (
            "not.a.jwt".to_owned(),
            "AuthTokenInvalidError",
            "jwt malformed",
        ),
        (
            format!("{}.{payload}.", header("none")),
            "AuthTokenInvalidError",
            "jwt malformed",
        ),
        (
            format!("{}.{payload}.c2ln", header("HS512")),
            "AuthTokenInvalidError",
            "invalid algorithm",
        ),
    ];
    for (token, name, message) in cases {
        let (mut ws, reply) = handshake_with(&server.url(), &token).await;
        let data = &reply["data"];
        assert_eq!(data["isAuthenticated"], false, "{token}");
        assert_eq!(data["authError"]["name"], name, "{token}");
        assert_eq!(data["authError"]["message"], message, "{token}");
        assert_eq!(data["authError"]["isBadToken"], true);
        assert_eq!(
            next_json(&mut ws).await,
            json!({"event": "#removeAuthToken"})
        );
        // The connection stays open and unauthenticated.
        assert_eq!(whoami(&mut ws, 2).await["error"]["name"], "AuthError");
    }
    let (_, reply) = handshake_with(&server.url(), &sign(KEY, json!({"exp": now() - 10}))).await;
    let expiry = reply["data"]["authError"]["expiry"].as_str().unwrap();
    assert!(expiry.ends_with(".000Z") && expiry.len() == 24, "{expiry}");
}

#[tokio::test]
async fn authenticate_good_bad_and_without_cid() {
    let server = start_with(config()).await;
    let mut ws = handshaken(&server.url()).await;
    let token = sign(KEY, json!({"username": "bob"}));
    send(
        &mut ws,
        &json!({"event": "#authenticate", "data": token, "cid": 2}).to_string(),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "data": {"isAuthenticated": true, "authError": null}})
    );
    assert_eq!(whoami(&mut ws, 3).await["data"]["username"], "bob");

    let bad = sign("wrong", json!({"username": "eve"}));
    send(
        &mut ws,
        &json!({"event": "#authenticate", "data": bad, "cid": 4}).to_string(),
    )
    .await;
    assert_eq!(
        next_n(&mut ws, 2).await,
        vec![
            json!({"event": "#removeAuthToken"}),
            json!({"rid": 4, "error": {"name": "AuthTokenInvalidError", "message": "invalid signature", "isBadToken": true}}),
        ]
    );
    // A refused token also ends the authentication the connection had.
    assert_eq!(whoami(&mut ws, 5).await["error"]["name"], "AuthError");
    send(
        &mut ws,
        &json!({"event": "#authenticate", "data": token}).to_string(),
    )
    .await;
    assert_eq!(expect_close(&mut ws).await.0, 4008);
}

#[tokio::test]
async fn login_sets_a_token_and_deauthentication_drops_it() {
    let server = start_with(config()).await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r#"{"event":"login","data":{"username":"ann"},"cid":2}"#,
    )
    .await;
    let frames = next_n(&mut ws, 2).await;
    assert_eq!(frames[1], json!({"rid": 2, "data": {"username": "ann"}}));
    let token = frames[0]["data"]["token"].as_str().unwrap();
    assert_eq!(frames[0]["event"], "#setAuthToken");
    let auth = Authenticator::hs256(KEY.as_bytes(), Duration::from_secs(1));
    let payload = auth.verify(token).unwrap();
    assert_eq!(payload["username"], "ann");
    assert_eq!(
        payload["exp"].as_u64().unwrap(),
        payload["iat"].as_u64().unwrap() + 86400
    );
    let me = whoami(&mut ws, 3).await;
    assert_eq!(me["data"], Value::Object(payload));
    // The client drops its token: the server forgets it too, without echoing #removeAuthToken.
    send(&mut ws, r##"{"event":"#removeAuthToken"}"##).await;
    assert_eq!(whoami(&mut ws, 4).await["error"]["name"], "AuthError");
    // An empty username is refused.
    send(
        &mut ws,
        r#"{"event":"login","data":{"username":" "},"cid":5}"#,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["error"]["name"], "BadRequest");
}

#[tokio::test]
async fn an_expired_token_is_removed_while_connected() {
    let mut config = config();
    config.endpoints[0].ping_interval_ms = 200;
    config.endpoints[0].ping_timeout_ms = 2000;
    let server = start_with(config).await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r#"{"event":"loginFor","data":{"username":"ann","seconds":1},"cid":2}"#,
    )
    .await;
    next_n(&mut ws, 2).await;
    assert_eq!(whoami(&mut ws, 3).await["data"]["username"], "ann");
    // Answer pings and wait: a pong after expiry makes the server drop the token by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let message = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("no #removeAuthToken within 5 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        if is_ping(text.as_str()) {
            send(&mut ws, "").await;
            continue;
        }
        assert_eq!(
            serde_json::from_str::<Value>(text.as_str()).unwrap(),
            json!({"event": "#removeAuthToken"})
        );
        break;
    }
    assert_eq!(whoami(&mut ws, 4).await["error"]["name"], "AuthError");
}

#[tokio::test]
async fn private_channels_need_login_and_are_left_on_logout() {
    let server = start_with(config()).await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"private/ann"},"cid":2}"##,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "error": {"name": "AuthError", "message": "Authentication is required to subscribe to private/ann"}})
    );
    send(
        &mut ws,
        r##"{"event":"#publish","data":{"channel":"private/ann","data":1},"cid":3}"##,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["error"]["name"], "AuthError");
    send(
        &mut ws,
        r#"{"event":"login","data":{"username":"ann"},"cid":4}"#,
    )
    .await;
    next_n(&mut ws, 2).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"private/ann"},"cid":5}"##,
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 5}));
    assert_eq!(server.handle.subscriber_count("private/ann"), 1);
    // Losing authentication kicks the socket out of channels that need it.
    send(&mut ws, r##"{"event":"#removeAuthToken"}"##).await;
    let kick = next_json(&mut ws).await;
    assert_eq!(kick["event"], "#kickOut");
    assert_eq!(kick["data"]["channel"], "private/ann");
}

#[tokio::test]
async fn access_rules_match_claims_for_channels_and_routes() {
    let mut config = config();
    config.access = toml::from_str(
        r#"
        [[channel]]
        pattern = "admin/*"
        subscribe = { role = "admin" }
        [[route]]
        pattern = "echo"
        call = "authenticated"
        "#,
    )
    .unwrap();
    let server = start_with(config).await;
    let user = sign(KEY, json!({"role": "user"}));
    let admin = sign(KEY, json!({"role": "admin"}));
    let (mut ws, _) = handshake_with(&server.url(), &user).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"admin/log"},"cid":2}"##,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["error"]["name"], "Forbidden");
    send(&mut ws, &echo(3, json!(1))).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3, "data": 1}));
    let (mut ws, _) = handshake_with(&server.url(), &admin).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"admin/log"},"cid":2}"##,
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 2}));
    let mut anonymous = handshaken(&server.url()).await;
    send(&mut anonymous, &echo(2, json!(1))).await;
    assert_eq!(
        next_json(&mut anonymous).await["error"]["name"],
        "AuthError"
    );
}

fn key_config(algorithm: AuthAlgorithm, private: &str, public: &str) -> AuthConfig {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
    let mut auth = AuthConfig::default();
    auth.algorithm = algorithm;
    auth.private_key_file = format!("{dir}{private}");
    auth.public_key_file = format!("{dir}{public}");
    auth
}

#[tokio::test]
async fn rs256_and_es256_key_files_sign_and_verify() {
    for (algorithm, private, public, alg) in [
        (
            AuthAlgorithm::RS256,
            "rsa-private.pem",
            "rsa-public.pem",
            "RS256",
        ),
        (
            AuthAlgorithm::ES256,
            "ec-private.pem",
            "ec-public.pem",
            "ES256",
        ),
    ] {
        let (auth, source) =
            Authenticator::from_config(&key_config(algorithm, private, public)).unwrap();
        assert_eq!(source, KeySource::Files);
        let token = auth.sign(claims(json!({"username": "ann"}))).unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        let mut config = config();
        config.auth = key_config(algorithm, private, public);
        let server = start_with(config).await;
        let (mut ws, reply) = handshake_with(&server.url(), &token).await;
        assert_eq!(reply["data"]["isAuthenticated"], true, "{alg}");
        assert_eq!(whoami(&mut ws, 2).await["data"]["username"], "ann");
        // An HS256 token signed with the public key as a secret (the classic confusion attack)
        // is refused.
        let public_pem = std::fs::read(format!(
            "{}/tests/keys/{public}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let forged = Authenticator::hs256(&public_pem, Duration::from_secs(60))
            .sign(Claims::new())
            .unwrap();
        let (_, reply) = handshake_with(&server.url(), &forged).await;
        assert_eq!(
            reply["data"]["authError"]["name"], "AuthTokenInvalidError",
            "{alg}"
        );
    }
    // Mismatched or missing files are start-up errors naming the key.
    let err = Authenticator::from_config(&key_config(
        AuthAlgorithm::RS256,
        "rsa-private.pem",
        "ec-public.pem",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("auth.public_key_file"), "{err}");
    let err = Authenticator::from_config(&key_config(
        AuthAlgorithm::ES256,
        "missing.pem",
        "ec-public.pem",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("auth.private_key_file"), "{err}");
}

#[test]
fn keys_come_from_config_then_environment_then_chance() {
    let mut auth = AuthConfig::default();
    auth.key = String::new();
    auth.key_env = "SOCKYARD_TEST_AUTH_KEY_THAT_IS_NEVER_SET".to_owned();
    let (random, source) = Authenticator::from_config(&auth).unwrap();
    assert_eq!(source, KeySource::Random);
    let (other, _) = Authenticator::from_config(&auth).unwrap();
    let token = random.sign(Claims::new()).unwrap();
    assert!(other.verify(&token).is_err(), "two random keys must differ");
    auth.key = "configured".to_owned();
    let (configured, source) = Authenticator::from_config(&auth).unwrap();
    assert_eq!(source, KeySource::Config);
    assert!(Authenticator::hs256(b"configured", Duration::from_secs(1))
        .verify(&configured.sign(Claims::new()).unwrap())
        .is_ok());
}

#[tokio::test]
async fn upgrade_and_handshake_stages_can_refuse() {
    let stages = Stages::new()
        .upgrade(|request| match request.query {
            Some(query) if query.contains("ticket=ok") => Ok(()),
            _ => Err(UpgradeRejection::unauthorized("ticket required")),
        })
        .handshake(|request| async move {
            if request.claims.is_some() {
                Ok(())
            } else {
                Err(
                    HandshakeRejection::new(ApiError::new("HandshakeRejected", "log in first"))
                        .close_code(4500),
                )
            }
        });
    let builder = Server::builder(&config())
        .routes(test_router().build().unwrap())
        .stages(stages);
    let server = start_built(builder).await;
    let err = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let url = format!("{}?ticket=ok", server.url());
    let mut ws = connect(&url).await;
    send(&mut ws, HANDSHAKE).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 1, "error": {"name": "HandshakeRejected", "message": "log in first", "statusCode": 4500}})
    );
    assert_eq!(
        expect_close(&mut ws).await,
        (4500, "log in first".to_owned())
    );
    let (mut ws, reply) = handshake_with(&url, &sign(KEY, json!({"username": "ann"}))).await;
    assert_eq!(reply["data"]["isAuthenticated"], true);
    send(&mut ws, &echo(2, json!(1))).await;
    assert_eq!(next_json(&mut ws).await["data"], 1);
}

#[tokio::test]
async fn channel_and_authenticate_stages_check_and_rewrite() {
    let stages = Stages::new()
        .subscribe(|request| async move {
            if request.data == Some(json!({"password": "sesame"}))
                || !request.channel.starts_with("locked")
            {
                Ok(request)
            } else {
                Err(ApiError::new("LockedError", "wrong password"))
            }
        })
        .publish_in(|mut request| async move {
            request.data = Some(json!({"stamped": request.data}));
            Ok(request)
        })
        .authenticate(|_connection, claims| async move {
            if claims.get("banned") == Some(&json!(true)) {
                Err(ApiError::new("BannedError", "banned"))
            } else {
                Ok(())
            }
        })
        .publish_out(|_connection, channel, data| match channel {
            "hidden" => Outbound::Block,
            "censored" => Outbound::Replace(json!("***")),
            _ => {
                let _ = data;
                Outbound::Deliver
            }
        });
    let builder = Server::builder(&config())
        .routes(test_router().build().unwrap())
        .stages(stages);
    let server = start_built(builder).await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"locked"},"cid":2}"##,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "error": {"name": "LockedError", "message": "wrong password"}})
    );
    send(&mut ws, r##"{"event":"#subscribe","data":{"channel":"locked","data":{"password":"sesame"}},"cid":3}"##).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3}));
    send(
        &mut ws,
        r##"{"event":"#publish","data":{"channel":"locked","data":5},"cid":4}"##,
    )
    .await;
    assert_eq!(
        next_n(&mut ws, 2).await,
        vec![
            json!({"event": "#publish", "data": {"channel": "locked", "data": {"stamped": 5}}}),
            json!({"rid": 4})
        ]
    );
    for (cid, channel) in [(5, "hidden"), (6, "censored")] {
        send(
            &mut ws,
            &json!({"event": "#subscribe", "data": {"channel": channel}, "cid": cid}).to_string(),
        )
        .await;
        assert_eq!(next_json(&mut ws).await, json!({"rid": cid}));
    }
    server.handle.publish("hidden", 1).await.unwrap();
    server.handle.publish("censored", "secret").await.unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "#publish", "data": {"channel": "censored", "data": "***"}})
    );

    let banned = sign(KEY, json!({"banned": true}));
    send(
        &mut ws,
        &json!({"event": "#authenticate", "data": banned, "cid": 7}).to_string(),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 7, "data": {"isAuthenticated": false, "authError": {"name": "BannedError", "message": "banned"}}})
    );
    assert_eq!(whoami(&mut ws, 8).await["error"]["name"], "AuthError");
}

#[tokio::test]
async fn the_token_rules_of_auth_refuse_ageless_and_old_tokens_in_the_handshake() {
    let mut config = config();
    config.auth.require_exp = true;
    config.auth.max_token_age_s = 600;
    let server = start_with(config).await;
    let forever = sign_raw(json!({"username": "ann", "iat": now()}));
    let old = sign_raw(json!({"username": "ann", "iat": now() - 3600, "exp": now() + 60}));
    for (token, name) in [
        (forever, "AuthTokenInvalidError"),
        (old, "AuthTokenExpiredError"),
    ] {
        let (_, reply) = handshake_with(&server.url(), &token).await;
        assert_eq!(reply["data"]["isAuthenticated"], false, "{reply}");
        assert_eq!(reply["data"]["authError"]["name"], name, "{reply}");
    }
    let fresh = sign(KEY, json!({"username": "ann"}));
    let (_, reply) = handshake_with(&server.url(), &fresh).await;
    assert_eq!(reply["data"]["isAuthenticated"], true, "{reply}");
}

/// `claims` signed with [`KEY`] exactly as given (no `iat` or `exp` added).
fn sign_raw(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn key_files_are_read_from_the_config_files_directory() {
    let (_dir, file) =
        sockyard_test_support::keys::config_with_relative_keys("auth-keys", "RS256", "");
    let config = Config::from_file(&file).unwrap();
    let (auth, _) =
        Authenticator::from_config_in(&config.auth, config.base_dir.as_deref()).unwrap();
    let server = start_with(config).await;
    let token = auth.sign(claims(json!({"username": "ann"}))).unwrap();
    let (_, reply) = handshake_with(&server.url(), &token).await;
    assert_eq!(reply["data"]["isAuthenticated"], true, "{reply}");
}
