//! Contract testing as a kit: every request a connector's loopback mock received is checked
//! against the vendor's published spec, so a vendor test says "valid per spec" in one line:
//!
//! ```ignore
//! Contract::load("calcom", &["openapi.json"]).assert_valid(&server).await;
//! ```
//!
//! Owns: loading the spec files a connector follows from `fixtures/vendor-specs/<vendor>/` (the
//! used paths of the shared `vendor-specs/` originals, cut by `scripts/vendor-spec-subset.py`,
//! because CI runs on a clean clone of this repository alone), finding each request's operation
//! (method and path template, under the spec's base path), and checking it: required query
//! parameters and headers present, query values of the declared type, the credentials the
//! operation's security asks for, and the JSON body against the operation's request schema
//! (`$ref`s resolved inside the spec) with the `jsonschema` crate; a `multipart/related` upload
//! (Google's metadata-and-media form) has its JSON part checked so and must carry a typed media
//! part. OpenAPI 3.0/3.1 and Swagger 2
//! documents are read (YAML specs are stored as JSON by the subset script). An operation the held
//! spec lacks can be added with a schema written from the vendor's reference page
//! ([`Contract::with_operation`]); its test names the page. It must not validate responses (the
//! canned answers are the vendor's own examples) or be used outside tests.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{Map, Value, json};
use wiremock::{MockServer, Request};

/// The repository's copy of the vendor specs.
pub fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join("vendor-specs")
}

/// One spec document.
struct Doc {
    file: String,
    root: Value,
    swagger2: bool,
    /// Path prefix of every operation (Swagger `basePath`, or the path of the first server URL).
    base_path: String,
}

/// An operation added from a vendor's reference page (not in the held spec).
struct ExtraOperation {
    method: String,
    template: String,
    headers: Vec<String>,
    /// Query parameters it requires.
    query: Vec<String>,
    /// JSON Schema of its body; `None`: it takes no body (a read).
    body: Option<Value>,
    /// Its body is media (a file's bytes of a declared type), not JSON.
    media: bool,
}

/// The specs of one vendor, and what its tests' mocks serve besides the API.
pub struct Contract {
    vendor: String,
    docs: Vec<Doc>,
    extra: Vec<ExtraOperation>,
    ignored: Vec<String>,
    /// (operationId, `#/components/schemas/X`): the `oneOf` branch a connector sends.
    variants: Vec<(String, String)>,
}

/// What a request was matched to.
struct Found<'a> {
    label: String,
    doc: Option<&'a Doc>,
    path_item: Option<&'a Value>,
    operation: Option<&'a Value>,
    extra: Option<&'a ExtraOperation>,
}

impl Contract {
    /// The vendor's spec files under `fixtures/vendor-specs/<vendor>/`. Panics when one is missing
    /// or unreadable (a test without its spec must not pass).
    pub fn load(vendor: &str, files: &[&str]) -> Self {
        let docs = files
            .iter()
            .map(|file| {
                let path = specs_dir().join(vendor).join(file);
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("spec {}: {err}", path.display()));
                let mut root: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("spec {} is not JSON: {err}", path.display()));
                let swagger2 = root.get("swagger").is_some();
                if !swagger2 {
                    openapi30_nullable(&mut root);
                }
                let base_path = if swagger2 {
                    root.get("basePath").and_then(Value::as_str).unwrap_or("")
                } else {
                    root.pointer("/servers/0/url")
                        .and_then(Value::as_str)
                        .and_then(|url| url.split_once("://").map(|(_, rest)| rest))
                        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                        .unwrap_or("")
                }
                .trim_end_matches('/')
                .to_owned();
                Doc {
                    file: format!("{vendor}/{file}"),
                    root,
                    swagger2,
                    base_path,
                }
            })
            .collect();
        Self {
            vendor: vendor.to_owned(),
            docs,
            extra: Vec::new(),
            ignored: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// Requests to `path` are not the vendor's API (an OAuth token endpoint on the same mock).
    pub fn ignoring(mut self, path: &str) -> Self {
        self.ignored.push(path.to_owned());
        self
    }

    /// The connector sends the `oneOf` branch `schema` (`#/components/schemas/X`) of
    /// `operation_id`'s body: checked against that branch alone. For specs whose branches overlap
    /// (Cal.com's booking input), where `oneOf` would refuse every body matching two of them.
    pub fn variant(mut self, operation_id: &str, schema: &str) -> Self {
        self.variants
            .push((operation_id.to_owned(), schema.to_owned()));
        self
    }

    /// An operation the held spec lacks, with the headers it requires and a JSON Schema (draft 4)
    /// for its body written from the vendor's reference page.
    pub fn with_operation(
        mut self,
        method: &str,
        template: &str,
        headers: &[&str],
        body: Value,
    ) -> Self {
        self.extra.push(ExtraOperation {
            method: method.to_ascii_uppercase(),
            template: template.to_owned(),
            headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            query: Vec::new(),
            body: Some(body),
            media: false,
        });
        self
    }

    /// An upload the held spec describes only in prose (a resumable session's `PUT` of the
    /// content), with the query parameters it requires: its body must be non-empty media with a
    /// `Content-Type`.
    pub fn with_media(mut self, method: &str, template: &str, query: &[&str]) -> Self {
        self.extra.push(ExtraOperation {
            method: method.to_ascii_uppercase(),
            template: template.to_owned(),
            headers: vec!["content-type".into()],
            query: query.iter().map(|q| (*q).to_owned()).collect(),
            body: None,
            media: true,
        });
        self
    }

    /// A read the held spec lacks (Salesforce's SOQL `GET /query?q=`), with the headers and query
    /// parameters it requires, written from the vendor's reference page; it must carry no body.
    pub fn with_read(mut self, template: &str, headers: &[&str], query: &[&str]) -> Self {
        self.extra.push(ExtraOperation {
            method: "GET".into(),
            template: template.to_owned(),
            headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            query: query.iter().map(|q| (*q).to_owned()).collect(),
            body: None,
            media: false,
        });
        self
    }

    /// Every request `server` received is valid per spec; at least one was received. Panics with
    /// every violation, one line each.
    pub async fn assert_valid(&self, server: &MockServer) {
        let requests = server
            .received_requests()
            .await
            .expect("the mock records requests");
        self.assert_requests(&requests);
    }

    /// [`Contract::assert_valid`] for requests already read from a mock.
    pub fn assert_requests(&self, requests: &[Request]) {
        let mut problems = String::new();
        let mut checked = 0;
        for request in requests {
            if self.ignored.iter().any(|p| p == request.url.path()) {
                continue;
            }
            checked += 1;
            if let Err(problem) = self.check(request) {
                let _ = writeln!(
                    problems,
                    "{} {}: {problem}",
                    request.method,
                    request.url.path()
                );
            }
        }
        assert!(
            problems.is_empty(),
            "requests not valid per the {} spec:\n{problems}",
            self.vendor
        );
        assert!(checked > 0, "no {} request reached the mock", self.vendor);
    }

    /// Checks one request; the error lists what is wrong.
    pub fn check(&self, request: &Request) -> Result<(), String> {
        let method = request.method.as_str().to_ascii_uppercase();
        let path = request.url.path();
        let found = self
            .find(&method, path)
            .ok_or_else(|| "no operation in the spec has this method and path".to_owned())?;
        let mut problems = Vec::new();
        if found.extra.is_some_and(|extra| extra.media) && request.body.is_empty() {
            problems.push("the upload carries no media".into());
        }
        let body = match found.extra {
            Some(extra) if extra.media => None,
            _ => parse_body(request, &mut problems),
        };
        if let Some(extra) = found.extra {
            for header in &extra.headers {
                if !request.headers.contains_key(header.as_str()) {
                    problems.push(format!("required header {header} missing"));
                }
            }
            for name in &extra.query {
                if !request
                    .url
                    .query_pairs()
                    .any(|(key, _)| key == name.as_str())
                {
                    problems.push(format!("required query parameter {name} missing"));
                }
            }
            match (&extra.body, &body) {
                (Some(schema), Some(body)) => validate(schema, None, body, &mut problems),
                (Some(_), None) => problems.push("the operation needs a JSON body".into()),
                (None, Some(_)) => problems.push("the operation takes no JSON body".into()),
                (None, None) => {}
            }
        } else if let (Some(doc), Some(path_item), Some(operation)) =
            (found.doc, found.path_item, found.operation)
        {
            check_parameters(doc, path_item, operation, request, &mut problems);
            check_security(doc, operation, request, &mut problems);
            let schema = match self.variant_of(operation) {
                Some(branch) => match request_schema(doc, operation) {
                    Some((schema, required)) => {
                        // The body schema may itself be a `$ref` to the oneOf (WhatsApp's `Message`).
                        let listed = resolve(doc, &schema)
                            .get("oneOf")
                            .and_then(Value::as_array)
                            .is_some_and(|all| all.iter().any(|b| b["$ref"] == branch));
                        if !listed {
                            problems.push(format!("{branch} is not a oneOf branch of the body"));
                        }
                        Some((json!({ "$ref": branch }), required))
                    }
                    None => None,
                },
                None => request_schema(doc, operation),
            };
            match (schema, &body) {
                (Some((schema, _)), Some(body)) => {
                    validate(&schema, Some(doc), body, &mut problems);
                }
                (Some((_, true)), None) => problems.push("the operation needs a JSON body".into()),
                (None, Some(_)) => problems.push("the operation takes no JSON body".into()),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", found.label, problems.join("; ")))
        }
    }

    fn variant_of(&self, operation: &Value) -> Option<&str> {
        let id = operation.get("operationId").and_then(Value::as_str)?;
        self.variants
            .iter()
            .find(|(op, _)| op == id)
            .map(|(_, schema)| schema.as_str())
    }

    fn find(&self, method: &str, path: &str) -> Option<Found<'_>> {
        for extra in &self.extra {
            if extra.method == method && template_matches(&extra.template, path) {
                return Some(Found {
                    label: format!("{method} {} (reference page)", extra.template),
                    doc: None,
                    path_item: None,
                    operation: None,
                    extra: Some(extra),
                });
            }
        }
        for doc in &self.docs {
            let Some(rest) = path.strip_prefix(doc.base_path.as_str()) else {
                continue;
            };
            let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
                continue;
            };
            // A literal segment beats a parameter (`/contacts/search` before `/contacts/{id}`).
            let mut candidates: Vec<(&String, &Value)> = paths
                .iter()
                .filter(|(template, _)| template_matches(template, rest))
                .collect();
            candidates.sort_by_key(|(template, _)| template.matches('{').count());
            for (template, item) in candidates {
                if let Some(operation) = item.get(method.to_ascii_lowercase()) {
                    let id = operation
                        .get("operationId")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    return Some(Found {
                        label: format!("{} {method} {template} ({id})", doc.file),
                        doc: Some(doc),
                        path_item: Some(item),
                        operation: Some(operation),
                        extra: None,
                    });
                }
            }
        }
        None
    }
}

/// Whether `path` (percent-encoded, as received) fits the template `/a/{x}/b`.
fn template_matches(template: &str, path: &str) -> bool {
    let wanted: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    wanted.len() == got.len()
        && wanted.iter().zip(&got).all(|(w, g)| {
            if w.starts_with('{') && w.ends_with('}') {
                !g.is_empty()
            } else if let Some((param, verb)) = w.split_once("}:")
                && param.starts_with('{')
            {
                // Google's custom methods: `{range}:append`.
                g.strip_suffix(verb)
                    .and_then(|head| head.strip_suffix(':'))
                    .is_some_and(|head| !head.is_empty())
            } else {
                w == g
            }
        })
}

/// A local `$ref` (`#/components/parameters/x`) followed; other nodes as they are.
fn resolve<'a>(doc: &'a Doc, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) if reference.starts_with('#') => doc
            .root
            .pointer(&reference[1..])
            .map(|target| resolve(doc, target))
            .unwrap_or(node),
        _ => node,
    }
}

fn check_parameters(
    doc: &Doc,
    path_item: &Value,
    operation: &Value,
    request: &Request,
    problems: &mut Vec<String>,
) {
    let declared = [path_item, operation]
        .into_iter()
        .filter_map(|node| node.get("parameters").and_then(Value::as_array))
        .flatten()
        .map(|p| resolve(doc, p));
    let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
    let known_query: Vec<&str> = [path_item, operation]
        .into_iter()
        .filter_map(|node| node.get("parameters").and_then(Value::as_array))
        .flatten()
        .map(|p| resolve(doc, p))
        .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect();
    for (name, _) in &query {
        if !known_query.contains(&name.as_str()) {
            problems.push(format!("query parameter {name} is not in the spec"));
        }
    }
    for parameter in declared {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
        let required = parameter
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match parameter.get("in").and_then(Value::as_str) {
            Some("query") => {
                let values: Vec<&str> = query
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                if required && values.is_empty() {
                    problems.push(format!("required query parameter {name} missing"));
                }
                // OpenAPI 3 keeps the type under `schema`; Swagger 2 on the parameter itself.
                let schema = parameter.get("schema").unwrap_or(parameter);
                for value in values {
                    let typed = typed_value(schema, value);
                    let mut found = Vec::new();
                    validate(&simple_schema(doc, schema), Some(doc), &typed, &mut found);
                    problems.extend(found.into_iter().map(|p| format!("query {name}: {p}")));
                }
            }
            Some("header")
                if required
                    && !request
                        .headers
                        .contains_key(name.to_ascii_lowercase().as_str()) =>
            {
                problems.push(format!("required header {name} missing"));
            }
            _ => {}
        }
    }
}

/// The schema keywords of a parameter (Swagger 2 mixes them with `name`, `in`, …).
fn simple_schema(doc: &Doc, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let mut out = Map::new();
    if let Some(object) = schema.as_object() {
        for (key, value) in object {
            if !matches!(
                key.as_str(),
                "name" | "in" | "required" | "description" | "allowEmptyValue" | "example"
            ) && !key.starts_with("x-")
            {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// A query string value as the JSON value its schema's type means.
fn typed_value(schema: &Value, text: &str) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => text.parse::<i64>().map_or(json!(text), |n| json!(n)),
        Some("number") => text.parse::<f64>().map_or(json!(text), |n| json!(n)),
        Some("boolean") => text.parse::<bool>().map_or(json!(text), |b| json!(b)),
        _ => json!(text),
    }
}

/// The operation's security requirements (or the document's) are met by some alternative.
fn check_security(doc: &Doc, operation: &Value, request: &Request, problems: &mut Vec<String>) {
    let Some(alternatives) = operation
        .get("security")
        .or_else(|| doc.root.get("security"))
        .and_then(Value::as_array)
    else {
        return;
    };
    if alternatives.is_empty() {
        return;
    }
    let schemes = if doc.swagger2 {
        doc.root.get("securityDefinitions")
    } else {
        doc.root.pointer("/components/securitySchemes")
    };
    let satisfied = |name: &str| -> bool {
        let Some(scheme) = schemes.and_then(|s| s.get(name)) else {
            // A scheme the document does not define: credentials of any kind will do.
            return request.headers.contains_key("authorization");
        };
        match scheme.get("type").and_then(Value::as_str) {
            Some("apiKey") => {
                let key = scheme.get("name").and_then(Value::as_str).unwrap_or("");
                match scheme.get("in").and_then(Value::as_str) {
                    Some("query") => request.url.query_pairs().any(|(n, _)| n == key),
                    _ => request
                        .headers
                        .contains_key(key.to_ascii_lowercase().as_str()),
                }
            }
            _ => request.headers.contains_key("authorization"),
        }
    };
    let met = alternatives.iter().any(|alternative| {
        alternative
            .as_object()
            .is_some_and(|names| names.keys().all(|name| satisfied(name)))
    });
    if !met {
        problems.push("the credentials the operation's security asks for are missing".into());
    }
}

/// The JSON request schema and whether a body is required.
fn request_schema(doc: &Doc, operation: &Value) -> Option<(Value, bool)> {
    if doc.swagger2 {
        let parameters = operation.get("parameters").and_then(Value::as_array)?;
        let body = parameters
            .iter()
            .map(|p| resolve(doc, p))
            .find(|p| p.get("in").and_then(Value::as_str) == Some("body"))?;
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Some((body.get("schema")?.clone(), required));
    }
    let body = resolve(doc, operation.get("requestBody")?);
    let required = body
        .get("required")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let content = body.get("content")?.as_object()?;
    // JSON, else a form-encoded body (Stripe), which `parse_body` turns into JSON.
    let media = content
        .iter()
        .find(|(kind, _)| kind.starts_with("application/json") || is_json_suffix(kind))
        .or_else(|| {
            content
                .iter()
                .find(|(kind, _)| kind.starts_with("application/x-www-form-urlencoded"))
        })
        .map(|(_, media)| media)?;
    Some((media.get("schema")?.clone(), required))
}

fn parse_body(request: &Request, problems: &mut Vec<String>) -> Option<Value> {
    if request.body.is_empty() {
        return None;
    }
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Some(form_to_json(&request.body));
    }
    if content_type.starts_with("multipart/related") {
        return multipart_metadata(content_type, &request.body, problems);
    }
    let is_json = content_type.starts_with("application/json") || is_json_suffix(content_type);
    if !is_json {
        problems.push("the body is not declared as application/json".into());
    }
    match serde_json::from_slice(&request.body) {
        Ok(body) => Some(body),
        Err(err) => {
            problems.push(format!("the body is not JSON: {err}"));
            None
        }
    }
}

/// The JSON metadata part of a `multipart/related` body (RFC 2387: the metadata, then the media);
/// the media part must be there with its own `Content-Type`.
fn multipart_metadata(
    content_type: &str,
    body: &[u8],
    problems: &mut Vec<String>,
) -> Option<Value> {
    let Some(boundary) = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
    else {
        problems.push("multipart/related without a boundary".into());
        return None;
    };
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    if !text.trim_end().ends_with(&format!("{delimiter}--")) {
        problems.push("the multipart body lacks its closing delimiter".into());
    }
    // Each part: headers, a blank line, the content (its trailing CRLF belongs to the delimiter).
    let parts: Vec<(String, String)> = text
        .split(delimiter.as_str())
        .skip(1)
        .filter(|part| !part.starts_with("--"))
        .filter_map(|part| {
            let part = part.strip_prefix("\r\n")?;
            let (head, content) = part.split_once("\r\n\r\n")?;
            Some((
                head.to_ascii_lowercase(),
                content.strip_suffix("\r\n").unwrap_or(content).to_owned(),
            ))
        })
        .collect();
    if parts.len() != 2 {
        problems.push(format!(
            "a multipart upload has 2 parts (metadata, media), not {}",
            parts.len()
        ));
        return None;
    }
    if !parts[0].0.contains("content-type: application/json") {
        problems.push("the first part is not application/json metadata".into());
    }
    if !parts[1].0.contains("content-type:") || parts[1].1.is_empty() {
        problems.push("the media part lacks a Content-Type or content".into());
    }
    match serde_json::from_str(&parts[0].1) {
        Ok(metadata) => Some(metadata),
        Err(err) => {
            problems.push(format!("the metadata part is not JSON: {err}"));
            None
        }
    }
}

/// A JSON media type with a suffix (`application/vnd.api+json`, JSON:API).
fn is_json_suffix(kind: &str) -> bool {
    kind.split(';')
        .next()
        .is_some_and(|media| media.trim().ends_with("+json"))
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space, `%XX` a byte).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &[u8]| -> String {
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            match text[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < text.len() => {
                    let hex = std::str::from_utf8(&text[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |b| *b == b'=');
            let key = decode(halves.next().unwrap_or_default());
            let value = decode(halves.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

/// A form body in bracket notation (`line_items[0][price]=p&mode=payment`) as the JSON object it
/// encodes: numeric segments index arrays; whole numbers and `true`/`false` become JSON numbers and
/// booleans (form values carry no type), every other value stays a string.
fn form_to_json(body: &[u8]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_pairs(body) {
        let mut segments = Vec::new();
        let (head, rest) = key.split_once('[').unwrap_or((key.as_str(), ""));
        segments.push(head.to_owned());
        for part in rest.split('[') {
            let part = part.trim_end_matches(']');
            if !part.is_empty() || !rest.is_empty() {
                segments.push(part.to_owned());
            }
        }
        let typed = if !value.is_empty()
            && value.chars().all(|c| c.is_ascii_digit())
            && (value.len() == 1 || !value.starts_with('0'))
        {
            value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(value.clone()))
        } else {
            match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(value.clone()),
            }
        };
        let mut node = &mut root;
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let next_is_index = segments
                .get(i + 1)
                .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty());
            let fresh = || {
                if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            };
            node = match node {
                Value::Array(items) => {
                    let index: usize = segment.parse().unwrap_or(items.len());
                    while items.len() <= index {
                        items.push(Value::Null);
                    }
                    let slot = &mut items[index];
                    if last {
                        *slot = typed.clone();
                    } else if slot.is_null() {
                        *slot = fresh();
                    }
                    slot
                }
                Value::Object(fields) => {
                    let slot = fields.entry(segment.clone()).or_insert_with(fresh);
                    if last {
                        *slot = typed.clone();
                    }
                    slot
                }
                other => other,
            };
        }
    }
    root
}

/// Validates `instance` against `schema` with the `jsonschema` crate. The spec's definitions ride
/// along in the root so its local `$ref`s resolve.
fn validate(schema: &Value, doc: Option<&Doc>, instance: &Value, problems: &mut Vec<String>) {
    let mut root = match schema {
        Value::Object(object) => object.clone(),
        other => {
            problems.push(format!("the schema is not an object: {other}"));
            return;
        }
    };
    if let Some(doc) = doc {
        for key in ["components", "definitions", "parameters"] {
            if let Some(value) = doc.root.get(key) {
                root.entry(key.to_owned()).or_insert_with(|| value.clone());
            }
        }
    }
    let root = Value::Object(root);
    let validator = match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&root)
    {
        Ok(validator) => validator,
        Err(err) => {
            problems.push(format!("the spec's schema does not compile: {err}"));
            return;
        }
    };
    for error in validator.iter_errors(instance) {
        problems.push(format!("body {}: {error}", error.instance_path()));
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` added to the type (and enum).
fn openapi30_nullable(node: &mut Value) {
    match node {
        Value::Object(object) => {
            if object.get("nullable").and_then(Value::as_bool) == Some(true) {
                if let Some(Value::String(kind)) = object.get("type").cloned() {
                    object.insert("type".into(), json!([kind, "null"]));
                }
                if let Some(Value::Array(values)) = object.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            for value in object.values_mut() {
                openapi30_nullable(value);
            }
        }
        Value::Array(values) => values.iter_mut().for_each(openapi30_nullable),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert!(template_matches(
            "/v2/bookings/{uid}/cancel",
            "/v2/bookings/abc/cancel"
        ));
        assert!(!template_matches(
            "/v2/bookings/{uid}/cancel",
            "/v2/bookings//cancel"
        ));
        assert!(!template_matches("/v2/bookings", "/v2/bookings/abc"));
    }
}
