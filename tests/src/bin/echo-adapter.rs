//! A minimal, fast debug adapter for the proxy benchmark: it answers every request at
//! once (`initialize` with a few capabilities, `launch` followed by `initialized`), so
//! what the benchmark measures is the transport, not a debugger.

use kbridge_tests::framing::{read_frame, write_frame};
use serde_json::{json, Value};
use std::io::{BufReader, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    let mut seq = 0;
    loop {
        let Ok(Some(body)) = read_frame(&mut input) else {
            return;
        };
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
            let _ = write_frame(&mut output, text.as_bytes());
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
