//! Signs a body the way a sender would and POSTs it to the demo receiver.
//!
//! ```sh
//! echo '{"type":"ping"}' | cargo run --example send                 # accepted: 200
//! echo '{"type":"ping"}' | cargo run --example send -- --tamper      # one byte changed: 401
//! cargo run --example send -- --id evt_42 payload.json
//! ```
//!
//! Arguments: `[--tamper] [--id <event id>] [FILE]` (the body comes from `FILE`, or from
//! standard input). Settings: `WEBHOOK_SCHEME` and `WEBHOOK_SECRET` as for the receiver (the
//! first secret signs), and `WEBHOOK_URL` (default `http://127.0.0.1:3000/webhook`).
//! Prints the response's status and body; exits 0 on a 2xx answer, 1 otherwise.

#[path = "support/mod.rs"]
mod support;

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tower_webhook::scheme::Signer;

struct Args {
    tamper: bool,
    id: Option<String>,
    file: Option<String>,
}

fn args() -> Result<Args, support::Error> {
    let mut args = Args {
        tamper: false,
        id: None,
        file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--tamper" => args.tamper = true,
            "--id" => args.id = Some(it.next().ok_or("--id needs a value")?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if args.file.is_some() => return Err("more than one FILE".into()),
            _ => args.file = Some(arg),
        }
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        support::exit_with(e);
    }
}

async fn run() -> Result<(), support::Error> {
    let args = args()?;
    let mut body = Vec::new();
    match &args.file {
        Some(path) => body = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        None => {
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| format!("stdin: {e}"))?;
        }
    }
    let secret = support::secrets()
        .and_then(|s| s.into_iter().next())
        .unwrap_or_else(|| support::DEV_SECRET.to_owned());
    let signer = Signer::new(&support::scheme()?, &secret).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let id = args.id.unwrap_or_else(|| format!("evt_{}", now.as_nanos()));
    let headers = signer
        .sign(&id, now.as_secs(), &body)
        .map_err(|e| e.to_string())?;
    if args.tamper {
        // Signed first, changed after: the receiver must refuse it.
        match body.last_mut() {
            Some(last) => *last ^= 0x01,
            None => body.push(b' '),
        }
    }

    let url: Uri = support::var("WEBHOOK_URL")
        .unwrap_or_else(|| "http://127.0.0.1:3000/webhook".into())
        .parse()
        .map_err(|e| format!("WEBHOOK_URL: {e}"))?;
    let (Some(host), Some("http")) = (url.host(), url.scheme_str()) else {
        return Err("WEBHOOK_URL must be an http:// URL".into());
    };
    let authority = format!("{host}:{}", url.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    request.headers_mut().extend(headers);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let reply = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    println!("{} {}", status.as_u16(), String::from_utf8_lossy(&reply));
    if !status.is_success() {
        std::process::exit(1);
    }
    Ok(())
}
