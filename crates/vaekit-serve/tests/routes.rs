//! Every endpoint in-process (tower's `oneshot`), every bad input, the bounded queue, the live
//! WebSocket over loopback, and that the run folder is never written.

mod common;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tower::ServiceExt;
use vaekit::checkpoint::load_model;
use vaekit::config::TrainConfig;
use vaekit::data::{Split, load_data};
use vaekit::device::DeviceChoice;
use vaekit::inspect::{decode_codes, encode_dataset};
use vaekit::run::RunDir;
use vaekit_serve::{Model, router};

struct Reply {
    status: StatusCode,
    kind: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn image(&self) -> image::GrayImage {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.kind, "image/png");
        image::load_from_memory(&self.body).unwrap().to_luma8()
    }
    /// A refusal: this status, one line of JSON `{"error": ...}` containing `needle`.
    fn refused(&self, status: StatusCode, needle: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let text = String::from_utf8_lossy(&self.body);
        assert!(!text.trim_end().contains('\n'), "{text}");
        let msg = self.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply { status, kind, body }
}

fn post_json(v: Value) -> String {
    v.to_string()
}

/// The model's own decode of `codes` as 8-bit pixels, one image after the other.
fn expected_pixels(run: &std::path::Path, codes: &[f32], n: usize) -> Vec<Vec<u8>> {
    let device = DeviceChoice::Cpu.device().unwrap();
    let (model, _, _) = load_model(&RunDir::open(run).unwrap(), &device).unwrap();
    let x = decode_codes(&model, codes, &[], &device);
    let [_, _, h, w] = x.dims();
    let v = x.into_data().try_into_vec::<f32>().unwrap();
    (0..n)
        .map(|i| {
            v[i * h * w..(i + 1) * h * w]
                .iter()
                .map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect()
        })
        .collect()
}

/// Image `i` of a PNG row of `w`-wide images, row-major.
fn cell(img: &image::GrayImage, i: usize, w: usize) -> Vec<u8> {
    let h = img.height() as usize;
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            out.push(img.get_pixel((i * w + x) as u32, y as u32)[0]);
        }
    }
    out
}

fn close(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_every_bad_input_is_one_json_line() {
    let t = common::trained_run(TrainConfig::default());
    let before = common::listing(&t.run);
    let model = Model::start(&t.run, DeviceChoice::Cpu, |w| panic!("{w}")).unwrap();
    let app = router(model);

    // The page and its assets.
    let page = call(&app, "GET", "/", Body::empty()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("/app.js"));
    assert!(
        call(&app, "GET", "/app.js", Body::empty())
            .await
            .kind
            .contains("javascript")
    );
    assert!(
        call(&app, "GET", "/style.css", Body::empty())
            .await
            .kind
            .contains("css")
    );

    // GET /api/model
    let m = call(&app, "GET", "/api/model", Body::empty()).await.json();
    assert_eq!(m["kind"], "conv");
    assert_eq!(m["latent"], 4);
    assert_eq!(m["classes"], 0);
    assert_eq!(m["epoch"], 1);
    assert_eq!(m["test_images"], 100);
    let w = m["image"][2].as_u64().unwrap() as usize;
    let h = m["image"][1].as_u64().unwrap() as usize;

    // GET /api/atlas: 100 test codes, KL and spread per dimension, the PCA plane.
    let a = call(&app, "GET", "/api/atlas", Body::empty()).await.json();
    assert_eq!(a["means"].as_array().unwrap().len(), 100);
    assert_eq!(a["kl_per_dim"].as_array().unwrap().len(), 4);
    assert!(
        a["kl_per_dim"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.as_f64().unwrap() >= 0.0)
    );
    assert_eq!(a["pca_components"].as_array().unwrap().len(), 2);
    assert_eq!(a["pca_points"].as_array().unwrap().len(), 100);

    // POST /api/decode: the model's own decode, in a row.
    let codes = [0.5f32, -1.0, 0.0, 2.0, -0.3, 0.7, 1.5, -2.0];
    let d = call(
        &app,
        "POST",
        "/api/decode",
        post_json(json!({"z": [&codes[..4], &codes[4..]]})),
    )
    .await
    .image();
    assert_eq!((d.width() as usize, d.height() as usize), (2 * w, h));
    let want = expected_pixels(&t.run, &codes, 2);
    assert!(close(&cell(&d, 0, w), &want[0]) && close(&cell(&d, 1, w), &want[1]));
    assert_ne!(cell(&d, 0, w), cell(&d, 1, w));

    // GET /api/test-image and POST /api/encode: the posterior of the image as training reads it.
    let img = call(&app, "GET", "/api/test-image?index=3", Body::empty()).await;
    assert_eq!(img.image().dimensions(), (w as u32, h as u32));
    let e = call(&app, "POST", "/api/encode", img.body.clone())
        .await
        .json();
    let device = DeviceChoice::Cpu.device().unwrap();
    let dir = RunDir::open(&t.run).unwrap();
    let cfg = dir.config().unwrap();
    let (lib_model, _, _) = load_model(&dir, &device).unwrap();
    let test = load_data(&cfg.data, None, cfg.seed).unwrap();
    let want = encode_dataset(&lib_model, test.get(Split::Test), Some(&[3]), 1, &device);
    let mean: Vec<f32> = serde_json::from_value(e["mean"].clone()).unwrap();
    let logvar: Vec<f32> = serde_json::from_value(e["logvar"].clone()).unwrap();
    assert_eq!(mean.len(), 4);
    for (a, b) in mean
        .iter()
        .zip(&want.mean)
        .chain(logvar.iter().zip(&want.logvar))
    {
        assert!((a - b).abs() < 1e-4, "{mean:?} vs {:?}", want.mean);
    }

    // GET /api/sample: seeded; the JSON codes decode to the PNG.
    let s1 = call(
        &app,
        "GET",
        "/api/sample?n=3&seed=5&format=json",
        Body::empty(),
    )
    .await
    .json();
    let s2 = call(
        &app,
        "GET",
        "/api/sample?n=3&seed=5&format=json",
        Body::empty(),
    )
    .await
    .json();
    let s3 = call(
        &app,
        "GET",
        "/api/sample?n=3&seed=6&format=json",
        Body::empty(),
    )
    .await
    .json();
    assert_eq!(s1, s2);
    assert_ne!(s1["z"], s3["z"]);
    let cold = call(
        &app,
        "GET",
        "/api/sample?n=3&seed=5&temperature=0",
        Body::empty(),
    )
    .await;
    let zero = call(
        &app,
        "POST",
        "/api/decode",
        post_json(json!({"z": [[0, 0, 0, 0]]})),
    )
    .await;
    assert_eq!(cell(&cold.image(), 2, w), cell(&zero.image(), 0, w));
    let png = call(&app, "GET", "/api/sample?n=3&seed=5", Body::empty())
        .await
        .image();
    let z: Vec<f32> = serde_json::from_value::<Vec<Vec<f32>>>(s1["z"].clone())
        .unwrap()
        .concat();
    let want = expected_pixels(&t.run, &z, 3);
    assert!((0..3).all(|i| close(&cell(&png, i, w), &want[i])));
    let grid = call(&app, "GET", "/api/sample?n=4&columns=2", Body::empty())
        .await
        .image();
    assert_eq!(
        (grid.width() as usize, grid.height() as usize),
        (2 * w, 2 * h)
    );
    call(&app, "GET", "/api/sample?n=4&columns=5", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "columns");

    // POST /api/interpolate: ends by index or by code; the first image is image 0's code.
    let strip = call(
        &app,
        "POST",
        "/api/interpolate",
        post_json(json!({"from": 0, "to": [1, 1, 1, 1], "steps": 5, "spherical": true})),
    )
    .await
    .image();
    assert_eq!(strip.width() as usize, 5 * w);
    let z0 = encode_dataset(&lib_model, test.get(Split::Test), Some(&[0]), 1, &device).mean;
    assert!(close(
        &cell(&strip, 0, w),
        &expected_pixels(&t.run, &z0, 1)[0]
    ));
    assert!(close(
        &cell(&strip, 4, w),
        &expected_pixels(&t.run, &[1.0; 4], 1)[0]
    ));

    // POST /api/test-codes
    let tc = call(
        &app,
        "POST",
        "/api/test-codes",
        post_json(json!({"indices": [0, 3]})),
    )
    .await;
    let tc: Vec<Vec<f32>> = serde_json::from_value(tc.json()["z"].clone()).unwrap();
    assert!((tc[1][0] - mean[0]).abs() < 1e-4, "{tc:?} vs {mean:?}");

    // Bad input: one JSON line each, never a panic.
    let bad = |body: Value| post_json(body);
    call(&app, "POST", "/api/decode", bad(json!({"z": [[1, 2, 3]]})))
        .await
        .refused(StatusCode::BAD_REQUEST, "4");
    call(&app, "POST", "/api/decode", r#"{"z": [[NaN, 0, 0, 0]]}"#)
        .await
        .refused(StatusCode::BAD_REQUEST, "JSON");
    call(
        &app,
        "POST",
        "/api/decode",
        bad(json!({"z": [[1e39, 0, 0, 0]]})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "finite");
    call(
        &app,
        "POST",
        "/api/decode",
        bad(json!({"z": [[1e6, 0, 0, 0]]})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "within");
    call(
        &app,
        "POST",
        "/api/decode",
        bad(json!({"z": vec![[0; 4]; 65]})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "64");
    call(&app, "POST", "/api/decode", bad(json!({"z": []})))
        .await
        .refused(StatusCode::BAD_REQUEST, "between 1");
    call(
        &app,
        "POST",
        "/api/decode",
        bad(json!({"z": [[0, 0, 0, 0]], "class": 3})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "not conditional");
    call(&app, "POST", "/api/decode", "not json")
        .await
        .refused(StatusCode::BAD_REQUEST, "JSON");
    call(
        &app,
        "POST",
        "/api/decode",
        bad(json!({"z": [[0, 0, 0, 0]], "extra": 1})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "extra");
    call(&app, "GET", "/api/sample?n=100000", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "n must be");
    call(&app, "GET", "/api/sample?n=x", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "n=x");
    call(&app, "GET", "/api/sample?temperature=inf", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "temperature");
    call(
        &app,
        "GET",
        "/api/sample?seed=99999999999999999",
        Body::empty(),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "seed");
    call(&app, "GET", "/api/sample?format=gif", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "format");
    call(&app, "GET", "/api/test-image?index=100", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "100");
    call(&app, "GET", "/api/test-image", Body::empty())
        .await
        .refused(StatusCode::BAD_REQUEST, "index");
    call(
        &app,
        "POST",
        "/api/interpolate",
        bad(json!({"from": 0, "to": 1, "steps": 1000})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "steps");
    call(
        &app,
        "POST",
        "/api/interpolate",
        bad(json!({"from": 0, "to": 5000})),
    )
    .await
    .refused(StatusCode::BAD_REQUEST, "5000");
    call(&app, "POST", "/api/encode", "this is not an image")
        .await
        .refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "upload");
    call(
        &app,
        "POST",
        "/api/encode",
        vaekit::data::synthetic::zero_png(20_000),
    )
    .await
    .refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "limit");
    call(&app, "POST", "/api/encode", vec![0u8; 5 << 20])
        .await
        .refused(StatusCode::PAYLOAD_TOO_LARGE, "");
    call(&app, "POST", "/api/encode?class=1", img.body.clone())
        .await
        .refused(StatusCode::BAD_REQUEST, "not conditional");
    call(&app, "GET", "/api/nothing", Body::empty())
        .await
        .refused(StatusCode::NOT_FOUND, "no such");
    call(&app, "GET", "/api/decode", Body::empty())
        .await
        .refused(StatusCode::METHOD_NOT_ALLOWED, "POST");

    // Many requests at once: each is answered, 200 or a one-line 503; the queue stays bounded.
    let many: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = post_json(json!({"z": vec![[i as f32 / 300.0; 4]; 64]}));
                call(&app, "POST", "/api/decode", body).await
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for h in many {
        let r = h.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            _ => {
                r.refused(StatusCode::SERVICE_UNAVAILABLE, "");
                busy += 1;
            }
        }
    }
    assert!(ok > 0 && busy > 0, "ok {ok}, busy {busy}");
    // ... and it still answers afterwards.
    zero.image();
    call(
        &app,
        "POST",
        "/api/decode",
        post_json(json!({"z": [[0, 0, 0, 0]]})),
    )
    .await
    .image();

    assert_eq!(
        common::listing(&t.run),
        before,
        "the server wrote into the run folder"
    );
}

/// The live socket decodes the newest code and drops the ones that arrived while it was busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_socket_answers_the_newest_request_and_skips_stale_ones() {
    let t = common::trained_run(TrainConfig::default());
    let model = Model::start(&t.run, DeviceChoice::Cpu, |w| panic!("{w}")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The server's own connection handling (head checks, upgrades), as `vaekit serve` runs.
    let hosts = vaekit_serve::conn::HostCheck::new("127.0.0.1", addr);
    tokio::spawn(vaekit_serve::conn::serve(
        listener,
        router(model),
        hosts,
        std::future::pending(),
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/live"))
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::Message;
    let n = 60;
    for i in 0..n {
        let v = -2.0 + 4.0 * i as f32 / (n - 1) as f32;
        let msg = json!({"z": vec![[v; 4]; 64]}).to_string();
        ws.send(Message::Text(msg.into())).await.unwrap();
    }
    ws.send(Message::Text("{\"z\": [[1, 2]]}".into()))
        .await
        .unwrap();
    let last = json!({"z": [[2.0, 2.0, 2.0, 2.0]]}).to_string();
    ws.send(Message::Text(last.into())).await.unwrap();
    let want = expected_pixels(&t.run, &[2.0; 4], 1).remove(0);
    let mut replies = 0;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(60), ws.next())
            .await
            .expect("an answer within a minute")
            .unwrap()
            .unwrap();
        replies += 1;
        if let Message::Binary(b) = m {
            let img = image::load_from_memory(&b).unwrap().to_luma8();
            if img.width() == img.height() && close(&cell(&img, 0, img.width() as usize), &want) {
                break;
            }
        }
    }
    assert!(
        replies < n / 2,
        "{replies} answers to {n} requests: stale requests were not skipped"
    );
    // At most MAX_SOCKETS are open at once: one more is refused with 503 until one closes.
    let url = format!("ws://{addr}/api/live");
    let mut open = Vec::new();
    for _ in 1..vaekit_serve::MAX_SOCKETS {
        open.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap()
                .0,
        );
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!(
            "socket {} was not refused: {other:?}",
            vaekit_serve::MAX_SOCKETS + 1
        ),
    }
    ws.close(None).await.unwrap();
    drop(ws);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok((s, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed socket's place was not freed");
}

/// Every model kind serves: its kind, a decode, an encode, seeded codes from its prior, and for
/// a conditional model the class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_kind_serves() {
    use vaekit::config::{
        Architecture, Conditioning, DecoderArchitecture, MethodConfig, Objective, TopLatentConfig,
        VaeGanConfig,
    };
    let base = TrainConfig::default;
    let mut kinds: Vec<(&str, TrainConfig)> = Vec::new();
    let mut mlp = base();
    mlp.model.architecture = Architecture::Mlp { hidden: vec![32] };
    kinds.push(("mlp", mlp));
    let mut iwae = base();
    iwae.objective = Objective::Iwae { k: 2 };
    kinds.push(("iwae", iwae));
    let mut hvae = base();
    hvae.model.top = Some(TopLatentConfig::default());
    kinds.push(("hvae", hvae));
    let mut cvae = base();
    cvae.model.classes = 10;
    cvae.model.conditioning = Some(Conditioning::default());
    kinds.push(("cvae", cvae));
    let mut gan = base();
    gan.method = MethodConfig::Vaegan(VaeGanConfig::default());
    gan.model.decoder = Some(DecoderArchitecture::default_cppn());
    kinds.push(("vaegan", gan));
    for (kind, cfg) in kinds {
        let t = common::trained_run(cfg);
        let app = router(Model::start(&t.run, DeviceChoice::Cpu, |w| panic!("{w}")).unwrap());
        let m = call(&app, "GET", "/api/model", Body::empty()).await.json();
        assert_eq!(m["kind"], kind, "{m}");
        let conditional = kind == "cvae";
        assert_eq!(m["classes"], if conditional { 10 } else { 0 });
        let class = if conditional { json!(7) } else { Value::Null };
        let d = call(
            &app,
            "POST",
            "/api/decode",
            post_json(json!({"z": [[0.5, 0, 0, -1]], "class": class})),
        )
        .await
        .image();
        assert_eq!(d.width(), m["image"][2].as_u64().unwrap() as u32);
        let img = call(&app, "GET", "/api/test-image?index=0", Body::empty()).await;
        let q = if conditional { "?class=2" } else { "" };
        let e = call(&app, "POST", &format!("/api/encode{q}"), img.body.clone()).await;
        assert_eq!(e.json()["mean"].as_array().unwrap().len(), 4, "{kind}");
        let q = if conditional { "&class=3" } else { "" };
        let s = call(
            &app,
            "GET",
            &format!("/api/sample?n=2&format=json{q}"),
            Body::empty(),
        )
        .await;
        let s = s.json();
        assert_eq!(s["z"][0].as_array().unwrap().len(), 4, "{kind}: {s}");
        if conditional {
            assert_eq!(s["labels"], json!([3, 3]));
            call(
                &app,
                "POST",
                "/api/decode",
                post_json(json!({"z": [[0, 0, 0, 0]], "class": 10})),
            )
            .await
            .refused(StatusCode::BAD_REQUEST, "unknown class 10");
            // The class changes the decoded image.
            let other = call(
                &app,
                "POST",
                "/api/decode",
                post_json(json!({"z": [[0.5, 0, 0, -1]], "class": 1})),
            )
            .await
            .image();
            assert_ne!(other, d, "the class does not condition the decode");
        }
    }
}

/// A run whose dataset has moved still serves: one warning, no atlas, test images 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_its_dataset_serves_without_test_images() {
    let t = common::trained_run(TrainConfig::default());
    let cfg = RunDir::open(&t.run).unwrap().config().unwrap();
    std::fs::remove_dir_all(cfg.data.dir.unwrap()).unwrap();
    let warnings = std::sync::Mutex::new(Vec::new());
    let model = Model::start(&t.run, DeviceChoice::Cpu, |w| {
        warnings.lock().unwrap().push(w)
    })
    .unwrap();
    let warnings = warnings.into_inner().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no test images"), "{warnings:?}");
    let app = router(model);
    let m = call(&app, "GET", "/api/model", Body::empty()).await.json();
    assert_eq!(m["test_images"], 0);
    let a = call(&app, "GET", "/api/atlas", Body::empty()).await.json();
    assert!(a["means"].as_array().unwrap().is_empty());
    call(&app, "GET", "/api/test-image?index=0", Body::empty())
        .await
        .refused(StatusCode::NOT_FOUND, "test images");
    call(
        &app,
        "POST",
        "/api/decode",
        post_json(json!({"z": [[0, 0, 0, 0]]})),
    )
    .await
    .image();
}
