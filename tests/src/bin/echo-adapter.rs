//! A minimal, fast debug adapter for the proxy benchmark: it answers every request at
//! once (`initialize` with a few capabilities, `launch` followed by `initialized`), so
//! what the benchmark measures is the transport, not a debugger.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    let mut seq = 0;
    loop {
        let mut length = None;
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let Some(length) = length else { return };
        let mut body = vec![0; length];
        if input.read_exact(&mut body).is_err() {
            return;
        }
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        if request["type"] != "request" {
            continue;
        }
        let command = request["command"].as_str().unwrap_or_default().to_string();
        let response_body = match command.as_str() {
            "initialize" => json!({"supportsConfigurationDoneRequest": true}),
            "threads" => json!({"threads": [{"id": 1, "name": "main"}]}),
            "evaluate" => json!({"result": "42", "variablesReference": 0}),
            _ => json!({}),
        };
        let mut send = |message: Value| {
            seq += 1;
            let mut message = message;
            message["seq"] = json!(seq);
            let text = message.to_string();
            let _ = write!(output, "Content-Length: {}\r\n\r\n{text}", text.len());
        };
        send(
            json!({"type": "response", "request_seq": request["seq"], "success": true,
                    "command": command, "body": response_body}),
        );
        if command == "launch" || command == "attach" {
            send(json!({"type": "event", "event": "initialized"}));
        }
        if output.flush().is_err() {
            return;
        }
        if command == "disconnect" {
            return;
        }
    }
}
