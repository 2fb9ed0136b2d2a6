//! The method registry: one public API through which built-in and game
//! methods alike are registered by name.

use bevy_platform::collections::HashMap;
use std::sync::Arc;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_ecs::system::{IntoSystem, SystemId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use portcullis_protocol::{ErrorCode, RequestId, RpcError};

/// Whom a method is for (docs/protocol.md §4, **auth**). This crate only
/// records the declaration and hands it to the [`RpcGates`]; it checks
/// nothing itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may call it.
    Public,
    /// Only an authenticated caller (docs/protocol.md §4: a live token in
    /// `params.token`). A gate of the layer that owns authentication enforces it.
    LoggedIn,
}

/// Where the answer to one request goes. Keep it to answer later with
/// [`Rpc::respond`](crate::Rpc::respond) after returning [`Reply::Later`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The connection's entity.
    pub entity: Entity,
    /// The request id; `None` for a notification (nothing is ever sent back).
    pub id: Option<RequestId>,
    /// Unique per dispatched request; identifies the hold it may place.
    pub ticket: u64,
}

/// One call of a method: who called, and the typed params.
#[derive(Debug, Clone)]
pub struct Request<P> {
    /// Where the answer goes.
    pub reply_to: ReplyTo,
    /// `params`, deserialized (a missing or `null` `params` is `{}`).
    pub params: P,
}

impl<P> Request<P> {
    /// The calling connection's entity.
    pub fn entity(&self) -> Entity {
        self.reply_to.entity
    }
}

/// What a method handler returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<R> {
    /// Answer with this result.
    Ok(R),
    /// Answer with this error.
    Err(RpcError),
    /// The answer comes later through [`Rpc::respond`](crate::Rpc::respond).
    /// Until then the connection's later frames wait, so requests apply in
    /// arrival order (docs/protocol.md §2); [`Rpc::release`](crate::Rpc::release)
    /// lets them go earlier.
    Later,
    /// The handler already answered (or deliberately sends nothing).
    Handled,
}

impl<R> From<Result<R, RpcError>> for Reply<R> {
    fn from(result: Result<R, RpcError>) -> Self {
        match result {
            Ok(r) => Self::Ok(r),
            Err(e) => Self::Err(e),
        }
    }
}

/// What a handler may return: a [`Reply`] or a `Result<R, RpcError>`.
pub trait IntoReply: Send + 'static {
    /// The result type, serialized as `result`.
    type Output: Serialize;
    /// Converts into a [`Reply`].
    fn into_reply(self) -> Reply<Self::Output>;
}

impl<R: Serialize + Send + 'static> IntoReply for Reply<R> {
    type Output = R;
    fn into_reply(self) -> Reply<R> {
        self
    }
}

impl<R: Serialize + Send + 'static> IntoReply for Result<R, RpcError> {
    type Output = R;
    fn into_reply(self) -> Reply<R> {
        self.into()
    }
}

/// Params of a method that takes none: accepts any object and ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct NoParams {}

/// What the dispatcher hands a registered method.
pub(crate) struct Call {
    pub reply_to: ReplyTo,
    pub params: Value,
    /// `params` as written.
    pub params_raw: Option<Box<serde_json::value::RawValue>>,
    /// A top-level name repeated in `params` (`-32602` naming it).
    pub duplicate_param: Option<String>,
}

/// What came of invoking a method.
pub(crate) enum Outcome {
    /// Answer with this result (JSON text) or error.
    Reply(Result<String, RpcError>),
    /// Answer with this whole result line (the result serialized into it once).
    Line(String),
    Later,
    Handled,
}

type Invoke = Arc<dyn Fn(&mut World, Call) -> Outcome + Send + Sync>;

/// One registered method.
#[derive(Clone)]
pub struct Method {
    /// Whom it is for.
    pub access: Access,
    pub(crate) invoke: Invoke,
    /// Its position in the registry (the key of its request counters).
    pub(crate) key: crate::MethodKey,
    /// A plain function ([`add_plain_method`]): it reads no world and always
    /// answers at once ([`Outcome::Reply`] or [`Outcome::Line`]), so the
    /// dispatcher counts its answer without putting it on the connection's
    /// awaiting list first.
    pub(crate) synchronous: bool,
}

/// Every registered method by name. Inserted by `RpcPlugin`; filled through
/// [`RpcAppExt::add_rpc_method`].
#[derive(Resource, Default, Clone)]
pub struct RpcMethods {
    /// Shared, so that the dispatcher's copy each frame is one count, not a
    /// map. foldhash with a fixed seed: names are the server's own, and a
    /// client's name is only looked up, never added.
    methods: Arc<HashMap<String, Method>>,
}

impl RpcMethods {
    /// The method of that name.
    pub fn get(&self, name: &str) -> Option<&Method> {
        self.methods.get(name)
    }

    /// Adds or replaces one method; returns its key (a replaced method
    /// keeps its key, so its request counters go on).
    pub(crate) fn insert(
        &mut self,
        name: String,
        access: Access,
        invoke: Invoke,
        synchronous: bool,
    ) -> crate::MethodKey {
        let key = match self.methods.get(&name) {
            Some(existing) => existing.key,
            None => crate::MethodKey(u32::try_from(self.methods.len()).unwrap_or(u32::MAX - 1)),
        };
        Arc::make_mut(&mut self.methods).insert(name, Method { access, invoke, key, synchronous });
        key
    }

    /// The name of the method with `key`, if one has it.
    pub(crate) fn name_of(&self, key: crate::MethodKey) -> Option<&str> {
        self.methods.iter().find(|(_, method)| method.key == key).map(|(name, _)| name.as_str())
    }

    /// Names of every registered method, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.methods.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// What a gate sees of a request before its params are parsed.
#[derive(Debug)]
pub struct GateInput<'a> {
    /// The calling connection.
    pub entity: Entity,
    /// The method name (registered).
    pub method: &'a str,
    /// The method's access rule.
    pub access: Access,
    /// The raw `params` (any JSON type; `Null` when absent).
    pub params: &'a Value,
    /// Whether the message is a request (`false` for a notification).
    pub is_request: bool,
    /// A member name that appears twice at the top level of `params`; a
    /// gate that reads that member answers `-32602` naming it (docs/protocol.md §2).
    pub duplicate_param: Option<&'a str>,
}

/// A check run before every registered method, in registration order; the
/// first error answers the request (docs/protocol.md §3, "which error wins":
/// the state and auth checks come before params are parsed).
pub type Gate = Arc<dyn Fn(&mut World, &GateInput<'_>) -> Result<(), RpcError> + Send + Sync>;

/// The gates, in order. Inserted (empty) by `RpcPlugin`; layers above add
/// their checks here (state and [`Access`] of the caller).
#[derive(Resource, Default, Clone)]
pub struct RpcGates(pub Vec<Gate>);

/// Registers methods on an `App`.
pub trait RpcAppExt {
    /// Registers `handler` as the method `name`. The handler is a Bevy system
    /// taking `In<Request<P>>` and returning a [`Reply`] or a
    /// `Result<R, RpcError>`; it runs at once when the request is
    /// dispatched, with full access to the world. `P` is deserialized from
    /// `params` (a wrong type is `-32602` naming the field, before the handler
    /// runs). Registering a name twice replaces the earlier method.
    ///
    /// # Examples
    ///
    /// ```
    /// use bevy_app::App;
    /// use bevy_ecs::prelude::*;
    /// use portcullis_rpc::{Access, Request, RpcAppExt, RpcError, RpcPlugin};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct AddParams { a: i64, b: i64 }
    /// #[derive(Serialize)]
    /// struct Sum { sum: i64 }
    ///
    /// fn add(In(req): In<Request<AddParams>>) -> Result<Sum, RpcError> {
    ///     Ok(Sum { sum: req.params.a + req.params.b })
    /// }
    ///
    /// let mut app = App::new();
    /// app.add_plugins((bevy_time::TimePlugin, portcullis_net::NetPlugin::memory(), RpcPlugin::default()));
    /// app.add_rpc_method("add", Access::Public, add);
    /// ```
    fn add_rpc_method<P, O, M>(
        &mut self,
        name: impl Into<String>,
        access: Access,
        handler: impl IntoSystem<In<Request<P>>, O, M> + 'static,
    ) -> &mut Self
    where
        P: DeserializeOwned + Send + Sync + 'static,
        O: IntoReply;
}

impl RpcAppExt for App {
    fn add_rpc_method<P, O, M>(
        &mut self,
        name: impl Into<String>,
        access: Access,
        handler: impl IntoSystem<In<Request<P>>, O, M> + 'static,
    ) -> &mut Self
    where
        P: DeserializeOwned + Send + Sync + 'static,
        O: IntoReply,
    {
        let name = name.into();
        let system: SystemId<In<Request<P>>, O> = self.world_mut().register_system(handler);
        let method_name = name.clone();
        let invoke: Invoke = Arc::new(move |world: &mut World, call: Call| {
            let (request, id) = match typed_request::<P>(call) {
                Ok(parsed) => parsed,
                Err(refused) => return refused,
            };
            match world.run_system_with(system, request) {
                Ok(output) => outcome_of(output, id, &method_name),
                Err(e) => {
                    bevy_log::error!(method = %method_name, error = %e, "method handler failed");
                    Outcome::Reply(Err(RpcError::new(ErrorCode::InternalError)))
                }
            }
        });
        register_method(self, &name, access, invoke, false);
        self
    }
}

/// The typed request of `call` and its id, or the `-32602` answer for a
/// duplicate member or params that do not parse as `P` (docs/protocol.md §2).
fn typed_request<P: DeserializeOwned>(call: Call) -> Result<(Request<P>, Option<RequestId>), Outcome> {
    if let Some(field) = call.duplicate_param {
        return Err(Outcome::Reply(Err(RpcError::invalid_params(&field))));
    }
    let params =
        parse_params_text::<P>(&call.params, call.params_raw.as_deref()).map_err(|e| Outcome::Reply(Err(e)))?;
    let id = call.reply_to.id.clone();
    Ok((Request { reply_to: call.reply_to, params }, id))
}

/// Adds `invoke` as the method `name` and files its name for its request
/// counters.
fn register_method(app: &mut App, name: &str, access: Access, invoke: Invoke, synchronous: bool) {
    let mut methods = app.world_mut().get_resource_or_init::<RpcMethods>();
    let key = methods.insert(name.to_owned(), access, invoke, synchronous);
    app.world_mut().get_resource_or_init::<crate::RequestCounters>().name(key, name);
}

/// Registers a built-in method whose handler needs no system parameters as a
/// plain function: the same params, checks and answers as
/// [`RpcAppExt::add_rpc_method`], without running a registered system per
/// call (BENCHMARKS.md: about 2,200 instructions of a `ping`).
pub(crate) fn add_plain_method<P, O>(app: &mut App, name: &str, access: Access, handler: fn(Request<P>) -> O)
where
    P: DeserializeOwned + Send + Sync + 'static,
    O: IntoReply + 'static,
{
    let method_name = name.to_owned();
    let invoke: Invoke = Arc::new(move |_world: &mut World, call: Call| match typed_request::<P>(call) {
        Ok((request, id)) => outcome_of(handler(request), id, &method_name),
        Err(refused) => refused,
    });
    register_method(app, name, access, invoke, true);
}

/// What a handler's output becomes: a result serialized once into its line
/// (nothing for a notification), an error, or a later answer.
fn outcome_of<O: IntoReply>(output: O, id: Option<RequestId>, method_name: &str) -> Outcome {
    match output.into_reply() {
        // A notification's result is never sent: not serialized either.
        Reply::Ok(_) if id.is_none() => Outcome::Reply(Ok(String::new())),
        Reply::Ok(result) => {
            let id = id.unwrap_or(RequestId::Null);
            match portcullis_protocol::result_line_of(&id, &result) {
                Ok(line) => Outcome::Line(line),
                Err(e) => {
                    bevy_log::error!(method = %method_name, error = %e, "result did not serialize");
                    Outcome::Reply(Err(RpcError::new(ErrorCode::InternalError)))
                }
            }
        }
        Reply::Err(error) => Outcome::Reply(Err(error)),
        Reply::Later => Outcome::Later,
        Reply::Handled => Outcome::Handled,
    }
}

/// Deserializes `params` (docs/protocol.md §2): missing or `null` is `{}`; any
/// other non-object is `-32602` with field `params`; a bad field is `-32602`
/// naming it (a `null` field counts as missing).
pub fn parse_params<P: DeserializeOwned>(params: Value) -> Result<P, RpcError> {
    let params = match params {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        _ => return Err(RpcError::invalid_params("params")),
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        let field = first_segment(&e.path().to_string())
            .or_else(|| missing_field(&e.inner().to_string()))
            .unwrap_or_else(|| "params".to_owned());
        RpcError::invalid_params(&field)
    })
}

/// [`parse_params`] from the text of `params` (`kind` is its parsed
/// value, for the type check), so typed params may keep raw JSON
/// (`Box<RawValue>`) exactly as written.
pub(crate) fn parse_params_text<P: DeserializeOwned>(
    kind: &Value,
    raw: Option<&serde_json::value::RawValue>,
) -> Result<P, RpcError> {
    let text = match (kind, raw) {
        (Value::Object(_), Some(raw)) => raw.get(),
        (Value::Null, _) => "{}",
        _ => return Err(RpcError::invalid_params("params")),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = first_segment(&e.path().to_string())
            .or_else(|| missing_field(&e.inner().to_string()))
            .unwrap_or_else(|| "params".to_owned());
        RpcError::invalid_params(&field)
    })
}

fn first_segment(path: &str) -> Option<String> {
    let first = path.split(['.', '[']).next()?;
    (!first.is_empty() && first != "?").then(|| first.to_owned())
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct P {
        token: String,
        data: serde_json::Map<String, Value>,
    }

    fn field(v: Value) -> String {
        let e = parse_params::<P>(v).expect_err("invalid");
        e.data.expect("data")["field"].as_str().expect("field").to_owned()
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(field(json!([1, 2])), "params");
        assert_eq!(field(json!("x")), "params");
        assert_eq!(field(json!({"data":{}})), "token");
        assert_eq!(field(json!({"token":null,"data":{}})), "token");
        assert_eq!(field(json!({"token":5,"data":{}})), "token");
        assert_eq!(field(json!({"token":"t","data":[1]})), "data");
        assert_eq!(field(json!({"token":"t"})), "data");
    }

    #[test]
    fn null_params_is_empty_object() {
        assert!(parse_params::<NoParams>(Value::Null).is_ok());
        assert!(parse_params::<NoParams>(json!({"extra": 1})).is_ok());
        let p: P = parse_params(json!({"token":"t","data":{"a":1},"extra":true})).expect("valid");
        assert_eq!(p.token, "t");
    }
}
