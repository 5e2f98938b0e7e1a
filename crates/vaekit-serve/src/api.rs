//! The JSON API's routes (see the README's "vaekit serve" section for the contract).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::worker::{Job, Png};

/// Most images one request may decode, sample or interpolate.
pub const MAX_IMAGES: usize = 64;

/// Largest magnitude a code's value may have (N(0, I) codes lie within about 5).
pub const MAX_CODE_VALUE: f32 = 1e3;

/// Largest seed accepted (JavaScript's exact integers, so a URL round-trips).
pub const MAX_SEED: u64 = (1 << 53) - 1;

fn png(bytes: Png) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

/// The body, or the extractor's refusal (413 over the limit).
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| ApiError::Body(r.status(), r.body_text()))
}

fn parse_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
}

/// Checks a code: the model's length, finite, not absurd.
pub fn check_code(code: &[f32], latent: usize) -> Result<(), ApiError> {
    if code.len() != latent {
        return Err(ApiError::BadRequest(format!(
            "a code has {} numbers; this model's codes have {latent}",
            code.len()
        )));
    }
    if let Some(v) = code
        .iter()
        .find(|v| !v.is_finite() || v.abs() > MAX_CODE_VALUE)
    {
        return Err(ApiError::BadRequest(format!(
            "code values must be finite and within +-{MAX_CODE_VALUE}, got {v}"
        )));
    }
    Ok(())
}

/// The label of a request: a class of a conditional model (0 if not given), none otherwise.
pub fn check_class(class: Option<i64>, classes: usize) -> Result<u32, ApiError> {
    match (class, classes) {
        (None, _) => Ok(0),
        (Some(c), 0) => Err(ApiError::BadRequest(format!(
            "class {c} given, but this model is not conditional"
        ))),
        (Some(c), n) if c < 0 || c as usize >= n => Err(ApiError::BadRequest(format!(
            "unknown class {c}: this model has classes 0 to {}",
            n - 1
        ))),
        (Some(c), _) => Ok(c as u32),
    }
}

/// The query parameters each API endpoint takes; any other is refused (as unknown JSON
/// fields are), so a misspelt `?tempreature=` is not silently ignored.
const QUERY_KEYS: &[(&str, &[&str])] = &[
    ("/api/encode", &["class"]),
    (
        "/api/sample",
        &["n", "seed", "columns", "temperature", "class", "format"],
    ),
    ("/api/test-image", &["index"]),
];

/// Middleware: refuses an `/api/` request with a query parameter its endpoint does not take.
pub async fn known_query(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if let (Some(query), true) = (req.uri().query(), path.starts_with("/api/")) {
        let allowed = QUERY_KEYS
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(&[][..], |(_, k)| *k);
        for (key, _) in url_pairs(query) {
            if !allowed.contains(&key.as_str()) {
                let takes = if allowed.is_empty() {
                    "no query parameters".to_string()
                } else {
                    allowed.join(", ")
                };
                return ApiError::BadRequest(format!(
                    "unknown query parameter '{}' for {path} (it takes {takes})",
                    key.chars().take(64).collect::<String>()
                ))
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The keys of a query string, percent-decoded as the `Query` extractor decodes them.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// The `class` query parameter, checked against the model (none when absent).
fn query_class(q: &HashMap<String, String>, classes: usize) -> Result<Option<u32>, ApiError> {
    q.get("class")
        .map(|c| {
            let c = c
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("class={c} is not a number")))?;
            check_class(Some(c), classes)
        })
        .transpose()
}

fn check_count(what: &str, n: usize) -> Result<(), ApiError> {
    if n == 0 || n > MAX_IMAGES {
        return Err(ApiError::BadRequest(format!(
            "{what} must be between 1 and {MAX_IMAGES}, got {n}"
        )));
    }
    Ok(())
}

/// `GET /api/model`.
pub async fn model(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(&*s.model.info).unwrap_or(Value::Null))
}

/// `GET /api/atlas`: the test set's codes, the PCA plane, class means, KL and spread per
/// dimension.
pub async fn atlas(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(&*s.model.atlas).unwrap_or(Value::Null))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeBody {
    z: Vec<Vec<f32>>,
    #[serde(default)]
    class: Option<i64>,
}

/// Checks and decodes codes into one PNG row.
pub async fn decode_codes(
    s: &AppState,
    z: Vec<Vec<f32>>,
    class: Option<i64>,
) -> Result<Png, ApiError> {
    let info = &s.model.info;
    check_count("the number of codes", z.len())?;
    for c in &z {
        check_code(c, info.latent)?;
    }
    let label = check_class(class, info.classes)?;
    let (labels, columns) = (vec![label; z.len()], z.len());
    let codes: Vec<f32> = z.into_iter().flatten().collect();
    s.model
        .ask(|reply| Job::Decode {
            codes,
            labels,
            columns,
            reply,
        })
        .await
}

/// `POST /api/decode` `{"z": [[...], ...], "class": C}` -> a PNG of the decoded images in a row.
pub async fn decode(
    State(s): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let d: DecodeBody = parse_json(&body(b)?)?;
    decode_codes(&s, d.z, d.class).await.map(png)
}

fn query_num<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{key}={v} is not a valid number"))),
    }
}

/// `POST /api/encode[?class=C]` with an image (PNG, JPEG or GIF) as the body -> `{"mean": [...],
/// "logvar": [...]}`. The image is preprocessed as training's image folders are.
pub async fn encode(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let info = &s.model.info;
    let label = query_class(&q, info.classes)?.unwrap_or(0);
    let shape = vaekit::config::ImageShape {
        channels: info.image[0],
        height: info.image[1],
        width: info.image[2],
    };
    // Its share of the decoding budget, for as long as it is decoded.
    // An image larger than the whole budget takes all of it; the decoder's own limits (4,096
    // pixels a side, 256 MiB) then refuse it with their message.
    let mib = decoded_mib(&b)?.min(crate::DECODE_BUDGET_MIB as u32);
    let permit = tokio::time::timeout(
        crate::DECODE_WAIT,
        s.decoding.clone().acquire_many_owned(mib),
    )
    .await
    .map_err(|_| ApiError::Busy)?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Decoding a large image is CPU work: off the async threads.
    let pixels = tokio::task::spawn_blocking(move || {
        let p = vaekit::data::image_folder::image_from_bytes(&b, shape, "the upload");
        drop(permit);
        p
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::BadImage(e.to_string()))?;
    let (mean, logvar) = s
        .model
        .ask(|reply| Job::Encode {
            pixels,
            label,
            reply,
        })
        .await?;
    Ok(Json(json!({ "mean": mean, "logvar": logvar })).into_response())
}

/// MiB an upload takes while it is decoded: its pixels as decoded (from the header alone) and
/// the converted copy; at least 1.
fn decoded_mib(bytes: &[u8]) -> Result<u32, ApiError> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::BadImage(format!("the upload: {e}")))?;
    if reader.format().is_none() {
        return Err(ApiError::BadImage(
            "the upload: not a PNG, JPEG or GIF image".into(),
        ));
    }
    let decoder = reader
        .into_decoder()
        .map_err(|e| ApiError::BadImage(format!("the upload: {e}")))?;
    let bytes = decoder.total_bytes().saturating_mul(2);
    Ok(bytes.div_ceil(1 << 20).clamp(1, u32::MAX as u64) as u32)
}

/// `GET /api/sample?n=&seed=&temperature=&class=&columns=&format=png|json` -> a PNG of `n`
/// prior samples (one row, or `columns` wide), or (format=json) their codes `{"z": [...],
/// "labels": [...]}`.
pub async fn sample(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let n: usize = query_num(&q, "n", 16)?;
    check_count("n", n)?;
    let seed: u64 = query_num(&q, "seed", 0)?;
    if seed > MAX_SEED {
        return Err(ApiError::BadRequest(format!(
            "seed must be at most {MAX_SEED}"
        )));
    }
    let columns: usize = query_num(&q, "columns", n)?;
    if columns == 0 || columns > n {
        return Err(ApiError::BadRequest(format!(
            "columns must be between 1 and n ({n}), got {columns}"
        )));
    }
    let temperature: f64 = query_num(&q, "temperature", 1.0)?;
    if !(temperature.is_finite() && (0.0..=10.0).contains(&temperature)) {
        return Err(ApiError::BadRequest(format!(
            "temperature must be between 0 and 10, got {temperature}"
        )));
    }
    let class = query_class(&q, s.model.info.classes)?;
    let (z, labels) = s
        .model
        .ask(|reply| Job::SampleCodes {
            n,
            seed,
            temperature,
            class,
            reply,
        })
        .await?;
    match q.get("format").map(String::as_str) {
        None | Some("png") => {
            let codes: Vec<f32> = z.into_iter().flatten().collect();
            let labels = if labels.is_empty() {
                vec![0; n]
            } else {
                labels
            };
            let p = s
                .model
                .ask(|reply| Job::Decode {
                    codes,
                    labels,
                    columns,
                    reply,
                })
                .await?;
            Ok(png(p))
        }
        Some("json") => Ok(Json(json!({ "z": z, "labels": labels })).into_response()),
        Some(f) => Err(ApiError::BadRequest(format!(
            "format={f}: expected png or json"
        ))),
    }
}

/// One end of an interpolation: a code, or a test image by index.
#[derive(Deserialize)]
#[serde(untagged)]
enum End {
    Index(usize),
    Code(Vec<f32>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterpolateBody {
    from: End,
    to: End,
    #[serde(default = "default_steps")]
    steps: usize,
    #[serde(default)]
    spherical: bool,
    #[serde(default)]
    class: Option<i64>,
}

fn default_steps() -> usize {
    8
}

/// `POST /api/interpolate` `{"from": I | [code], "to": J | [code], "steps": N, "spherical":
/// bool, "class": C}` -> a PNG strip of `steps` images from one end to the other (a number is
/// a test image, encoded to its posterior mean).
pub async fn interpolate(
    State(s): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let r: InterpolateBody = parse_json(&b)?;
    if r.steps < 2 || r.steps > MAX_IMAGES {
        return Err(ApiError::BadRequest(format!(
            "steps must be between 2 and {MAX_IMAGES}, got {}",
            r.steps
        )));
    }
    let mut ends = Vec::new();
    for e in [r.from, r.to] {
        ends.push(match e {
            End::Code(c) => c,
            End::Index(i) => {
                let (mut z, _) = s
                    .model
                    .ask(|reply| Job::TestCodes {
                        indices: vec![i],
                        reply,
                    })
                    .await?;
                z.pop().unwrap_or_default()
            }
        });
    }
    for c in &ends {
        check_code(c, s.model.info.latent)?;
    }
    let codes = vaekit::inspect::interpolate::interpolate(&ends[0], &ends[1], r.steps, r.spherical);
    decode_codes(&s, codes, r.class).await.map(png)
}

/// `GET /api/test-image?index=I` -> the test image as a PNG.
pub async fn test_image(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let index: usize = match q.get("index") {
        Some(_) => query_num(&q, "index", 0)?,
        None => return Err(ApiError::BadRequest("index is required".into())),
    };
    s.model
        .ask(|reply| Job::TestImage { index, reply })
        .await
        .map(png)
}

/// `POST /api/test-codes` `{"indices": [...]}` -> the test images' posterior means and labels.
pub async fn test_codes(
    State(s): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        indices: Vec<usize>,
    }
    let b = body(b)?;
    let r: B = parse_json(&b)?;
    check_count("the number of indices", r.indices.len())?;
    let (z, labels) = s
        .model
        .ask(|reply| Job::TestCodes {
            indices: r.indices,
            reply,
        })
        .await?;
    Ok(Json(json!({ "z": z, "labels": labels })).into_response())
}
