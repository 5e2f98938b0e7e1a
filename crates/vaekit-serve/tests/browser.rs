//! The page in a real headless Chromium, driven over the DevTools protocol: it loads without
//! console errors, moving a slider changes the decoded image (to the server's own decode of the
//! new code), drawing with the mouse encodes and decodes, and a screenshot is written.
//!
//! Skips with a message where no Chromium is installed, unless `VAEKIT_REQUIRE_BROWSER` is set
//! (CI sets it, so there it never skips). `VAEKIT_CHROMIUM` names the browser binary.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vaekit::config::TrainConfig;
use vaekit::device::DeviceChoice;
use vaekit_serve::{Model, router};

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VAEKIT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A DevTools connection to one page (flat session on the browser's socket).
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: Option<String>,
    /// Console errors, uncaught exceptions and failed loads seen so far.
    errors: Vec<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within a minute"))
                .unwrap()
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            self.event(&v);
        }
    }

    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]))
            }
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]["text"]))
            }
            _ => {}
        }
    }

    /// Evaluates `js` (awaiting a promise) in the page and returns its value.
    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}\nthrew: {e}");
        }
        r["result"]["value"].clone()
    }

    async fn mouse(&mut self, kind: &str, x: f64, y: f64, buttons: u8) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons,
                   "clickCount": 1}),
        )
        .await;
    }
}

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts headless Chromium and returns it with its DevTools socket address.
fn launch(bin: &PathBuf, profile: &std::path::Path) -> (Browser, String) {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Containers often have a small /dev/shm; Chromium then uses /tmp.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("ws://") {
                let _ = tx.send(line[i..].trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Chromium printed no DevTools address within a minute");
    (Browser(child), url)
}

/// The decoded image's pixels, read back through a canvas.
const PIXELS: &str = r#"
window.__pixels = () => {
  const img = document.getElementById('decoded');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  return Array.from(g.getImageData(0, 0, c.width, c.height).data);
};
window.__waitNew = async (old) => {
  const img = document.getElementById('decoded');
  for (let i = 0; i < 400; i++) {
    await new Promise((r) => setTimeout(r, 25));
    if (img.src !== old && img.complete && img.naturalWidth > 0) { await img.decode(); return; }
  }
  throw new Error('the decoded image did not change');
};
window.__serverPixels = async (z) => {
  const r = await fetch('/api/decode', {method: 'POST', body: JSON.stringify({z: [z]})});
  const bmp = await createImageBitmap(await r.blob());
  const c = document.createElement('canvas');
  c.width = bmp.width; c.height = bmp.height;
  const g = c.getContext('2d');
  g.drawImage(bmp, 0, 0);
  return Array.from(g.getImageData(0, 0, c.width, c.height).data);
};
window.__codeOfHash = () =>
  new URLSearchParams(location.hash.slice(1)).get('z').split(',').map(Number);
"#;

#[test]
fn the_page_works_in_a_real_browser() {
    let Some(bin) = find_chromium() else {
        if std::env::var_os("VAEKIT_REQUIRE_BROWSER").is_some() {
            panic!("VAEKIT_REQUIRE_BROWSER is set but no Chromium was found");
        }
        eprintln!(
            "skipped: no Chromium installed (apt-get install chromium, or set VAEKIT_CHROMIUM)"
        );
        return;
    };
    let t = common::trained_run(TrainConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let model = Model::start(&t.run, DeviceChoice::Cpu, |w| panic!("{w}")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The server's own connection handling (head checks, upgrades), as `vaekit serve` runs.
    let hosts = vaekit_serve::conn::HostCheck::new("127.0.0.1", addr);
    tokio::spawn(vaekit_serve::conn::serve(listener, router(model), hosts, std::future::pending()));

        let profile = tempfile::tempdir().unwrap();
        let (_browser, ws_url) = launch(&bin, profile.path());
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.unwrap();
        let mut cdp = Cdp {
            ws,
            next: 0,
            session: None,
            errors: Vec::new(),
        };
        let target = cdp
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await["targetId"]
            .clone();
        let session = cdp
            .call(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        cdp.session = Some(session);
        for m in ["Runtime.enable", "Log.enable", "Page.enable"] {
            cdp.call(m, json!({})).await;
        }
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let url = format!("http://{addr}/");
        cdp.call("Page.navigate", json!({"url": url})).await;

        // Loaded: the model's description is shown and the first decode is on screen.
        let ready = cdp
            .eval(
                "(async () => { for (let i = 0; i < 400; i++) { \
                   if (document.body && document.body.dataset.ready === '1') return true; \
                   await new Promise((r) => setTimeout(r, 25)); } return false; })()",
            )
            .await;
        assert_eq!(ready, json!(true), "the page never became ready: {:?}", cdp.errors);
        let info = cdp.eval("document.getElementById('info').textContent").await;
        assert!(info.as_str().unwrap().contains("conv"), "{info}");
        cdp.eval(PIXELS).await;
        // The live socket opens; from then on slider moves decode over it, not by POST.
        let live = cdp
            .eval(
                "(async () => { for (let i = 0; i < 400; i++) { \
                   if (document.body.dataset.live === '1') return true; \
                   await new Promise((r) => setTimeout(r, 25)); } return false; })()",
            )
            .await;
        assert_eq!(live, json!(true), "the live socket never opened: {:?}", cdp.errors);
        // Let the decode that follows the socket's opening arrive first.
        cdp.eval("new Promise((r) => setTimeout(r, 300))").await;
        let posts = "performance.getEntriesByType('resource')\
                     .filter((e) => e.name.endsWith('/api/decode')).length";
        let posts_before = cdp.eval(posts).await;

        // Moving a slider changes the decoded image to the server's decode of the new code.
        let moved = cdp
            .eval(
                "(async () => { \
                   const img = document.getElementById('decoded'); \
                   const before = window.__pixels(); const old = img.src; \
                   const s = document.querySelector('#sliders input'); \
                   s.value = 2.5; s.dispatchEvent(new Event('input', {bubbles: true})); \
                   await window.__waitNew(old); \
                   const posts = performance.getEntriesByType('resource') \
                     .filter((e) => e.name.endsWith('/api/decode')).length; \
                   const after = window.__pixels(); \
                   const code = window.__codeOfHash(); \
                   const server = await window.__serverPixels(code); \
                   let moved = 0, off = 0; \
                   for (let i = 0; i < after.length; i++) { \
                     moved += Math.abs(after[i] - before[i]); \
                     off = Math.max(off, Math.abs(after[i] - server[i])); } \
                   return {moved: moved / after.length, off, dim: s.dataset.dim, code, posts}; })()",
            )
            .await;
        eprintln!("slider: {moved}");
        assert!(moved["moved"].as_f64().unwrap() > 0.5, "{moved}");
        let took = cdp.eval("document.getElementById('status').textContent").await;
        eprintln!("status after the slider moved: {took}");
        assert!(moved["off"].as_f64().unwrap() <= 1.0, "{moved}");
        assert_eq!(
            moved["posts"], posts_before,
            "the slider's decode went by POST, not over the live socket"
        );
        let dim = moved["dim"].as_str().unwrap().parse::<usize>().unwrap();
        assert!((moved["code"][dim].as_f64().unwrap() - 2.5).abs() < 1e-9, "{moved}");

        // Drawing with the mouse encodes the drawing: the code becomes the server's encoding of
        // the canvas, and the decoded image follows.
        let rect = cdp
            .eval(
                "(() => { const r = document.getElementById('draw').getBoundingClientRect(); \
                   return [r.left, r.top, r.width, r.height]; })()",
            )
            .await;
        let r: Vec<f64> = serde_json::from_value(rect).unwrap();
        let old = cdp.eval("document.getElementById('decoded').src").await;
        cdp.mouse("mousePressed", r[0] + 0.5 * r[2], r[1] + 0.2 * r[3], 1)
            .await;
        for i in 0..=10 {
            let f = 0.2 + 0.6 * i as f64 / 10.0;
            cdp.mouse("mouseMoved", r[0] + 0.5 * r[2], r[1] + f * r[3], 1)
                .await;
        }
        cdp.mouse("mouseReleased", r[0] + 0.5 * r[2], r[1] + 0.8 * r[3], 0)
            .await;
        let drawn = cdp
            .eval(&format!(
                "(async () => {{ \
                   await window.__waitNew({old}); \
                   const blob = await new Promise((r) => \
                     document.getElementById('draw').toBlob(r, 'image/png')); \
                   const e = await (await fetch('/api/encode', {{method: 'POST', body: blob}})).json(); \
                   const code = window.__codeOfHash(); \
                   let off = 0; \
                   for (let j = 0; j < code.length; j++) off = Math.max(off, Math.abs(code[j] - e.mean[j])); \
                   const after = window.__pixels(); \
                   const server = await window.__serverPixels(e.mean); \
                   let px = 0; \
                   for (let i = 0; i < after.length; i++) px = Math.max(px, Math.abs(after[i] - server[i])); \
                   const c = document.getElementById('draw'); \
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                   let ink = 0; for (let i = 0; i < d.length; i += 4) ink += d[i] > 128; \
                   return {{off, px, ink}}; }})()",
                old = old
            ))
            .await;
        eprintln!("drawing: {drawn}");
        assert!(drawn["ink"].as_f64().unwrap() > 1000.0, "nothing drawn: {drawn}");
        // The hash holds the code to 3 decimals.
        assert!(drawn["off"].as_f64().unwrap() < 1e-3, "{drawn}");
        assert!(drawn["px"].as_f64().unwrap() <= 1.0, "{drawn}");

        // A screenshot of the page.
        let shot = cdp
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (1400, 1000));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
        std::fs::write(&out, &png).unwrap();
        eprintln!("screenshot: {}", out.display());

        // Collect any late events, then: no console errors at all.
        cdp.eval("new Promise((r) => setTimeout(r, 200))").await;
        assert!(cdp.errors.is_empty(), "console errors: {:#?}", cdp.errors);
    });
}
