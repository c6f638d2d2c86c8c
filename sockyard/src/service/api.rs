//! socketcluster-api's `#api` procedure on protobuf endpoints: `{resource, method, dataType,
//! buffer}` is routed to the router's method + path routes with the buffer decoded as
//! `dataType`, and the result comes back as `{dataType, buffer, isError}`.
//!
//! Unlike the original, a handler's error goes back under its own message type (the route's
//! declared `error` type, or the error's `dataType` field) instead of always becoming a generic
//! 500; a call with no route gets the original's `ApiError {code: 404, reason, description}`.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::endpoint::{ApiRoute, Endpoint};
use crate::codec::protobuf::Schema;
use crate::codec::Encoding;
use crate::error::ApiError;
use crate::peer::ConnectionHandle;
use crate::router::{CallFuture, Method};

/// The message type of socketcluster-api's own errors.
pub(crate) const API_ERROR_TYPE: &str = ".socketclusterapi.ApiError";

/// Starts an `#api` call on `endpoint`, whose protobuf types give the messages' types.
pub(crate) fn call(
    endpoint: &Endpoint,
    connection: ConnectionHandle,
    data: Option<Value>,
) -> CallFuture {
    let Encoding::Protobuf(schema) = &endpoint.format.encoding else {
        return Box::pin(std::future::ready(Err(ApiError::internal(
            "socketcluster-api types are missing",
        ))));
    };
    let schema: Arc<Schema> = schema.clone();
    let routes = endpoint.routes.clone();
    let declared: Vec<ApiRoute> = endpoint.api_routes.clone();
    Box::pin(async move {
        let data = data.unwrap_or(Value::Null);
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (resource, method_name, data_type) =
            (text("resource"), text("method"), text("dataType"));
        let method_name = if method_name.is_empty() {
            "get".to_owned()
        } else {
            method_name
        };
        let api = Api { schema };
        let Some((method, pattern)) = Method::parse(&method_name)
            .and_then(|m| routes.pattern_of(m, &resource).map(|p| (m, p)))
        else {
            let description = format!(
                "Requested resource '{} {resource}' has no handler defined.",
                method_name.to_ascii_uppercase()
            );
            return api.api_error(404, "Not Found", &description);
        };
        let payload = if data_type.is_empty() {
            json!({})
        } else {
            let Some(descriptor) = api.schema.message(&data_type) else {
                return api.api_error(
                    400,
                    "Bad Request",
                    &format!("Unknown dataType '{data_type}'"),
                );
            };
            let buffer = base64::engine::general_purpose::STANDARD
                .decode(text("buffer"))
                .unwrap_or_default();
            match api.schema.decode_message(&descriptor, &buffer) {
                Ok(payload) => payload,
                Err(err) => return api.api_error(400, "Bad Request", &err.to_string()),
            }
        };
        let declared = declared
            .into_iter()
            .find(|r| r.path == pattern && Method::parse(&r.method) == Some(method));
        match routes
            .call_path(&connection, method, &resource, Some(payload))
            .await
        {
            Ok(result) => api.success(result, declared.as_ref()),
            Err(error) => api.failure(&error, declared.as_ref()),
        }
    })
}

struct Api {
    schema: Arc<Schema>,
}

impl Api {
    fn reply(
        &self,
        type_name: &str,
        value: Value,
        is_error: bool,
    ) -> Result<Option<Value>, ApiError> {
        let Some(descriptor) = self.schema.message(type_name) else {
            return self.api_error(
                500,
                "Internal Server Error",
                &format!("Unknown message type '{type_name}'"),
            );
        };
        match self.schema.encode_message(&descriptor, value) {
            Ok(bytes) => Ok(Some(json!({
                "isError": is_error,
                "dataType": format!(".{}", descriptor.full_name()),
                "buffer": base64::engine::general_purpose::STANDARD.encode(bytes),
            }))),
            Err(err) => self.api_error(500, "Internal Server Error", &err.to_string()),
        }
    }

    fn success(
        &self,
        result: Option<Value>,
        declared: Option<&ApiRoute>,
    ) -> Result<Option<Value>, ApiError> {
        let result = result.unwrap_or_else(|| json!({}));
        if let Some(type_name) = declared.and_then(|r| r.response.as_deref()) {
            return self.reply(type_name, result, false);
        }
        // The original's convention: the handler names the type itself.
        if let (Some(Value::String(type_name)), Some(data)) =
            (result.get("dataType"), result.get("data"))
        {
            return self.reply(type_name, data.clone(), false);
        }
        self.api_error(
            500,
            "Internal Server Error",
            "The route declares no response message type",
        )
    }

    fn failure(
        &self,
        error: &ApiError,
        declared: Option<&ApiRoute>,
    ) -> Result<Option<Value>, ApiError> {
        let own_type = error.extra.get("dataType").and_then(Value::as_str);
        let Some(type_name) = own_type.or_else(|| declared.and_then(|r| r.error.as_deref())) else {
            let code = error
                .extra
                .get("code")
                .and_then(Value::as_u64)
                .unwrap_or(500);
            return self.api_error(code, &error.name, &error.message);
        };
        let mut fields: Map<String, Value> = error.extra.clone();
        fields.remove("dataType");
        fields.insert("message".to_owned(), Value::String(error.message.clone()));
        fields
            .entry("name")
            .or_insert_with(|| Value::String(error.name.to_string()));
        self.reply(type_name, Value::Object(fields), true)
    }

    fn api_error(
        &self,
        code: u64,
        reason: &str,
        description: &str,
    ) -> Result<Option<Value>, ApiError> {
        let value = json!({"code": code, "reason": reason, "description": description});
        match self.schema.message(API_ERROR_TYPE) {
            Some(descriptor) => match self.schema.encode_message(&descriptor, value) {
                Ok(bytes) => Ok(Some(json!({
                    "isError": true,
                    "dataType": API_ERROR_TYPE,
                    "buffer": base64::engine::general_purpose::STANDARD.encode(bytes),
                }))),
                Err(err) => Err(ApiError::internal(err.to_string())),
            },
            None => Err(ApiError::internal("socketcluster-api types are missing")),
        }
    }
}
