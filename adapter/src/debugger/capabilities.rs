//! What adapters answer to `initialize`. When the proxy must answer `initialize` before
//! the adapter runs (lazy start), it answers from this table, then sends a
//! `capabilities` event with whatever the real adapter reports differently.

use kbridge_config::Preset;
use serde_json::{json, Map, Value};

/// The capabilities a preset's adapter is known to report (recorded from debugpy 1.8,
/// lldb-dap 19 and Delve 1.20; the others from their documentation, conservatively).
pub fn for_preset(preset: Preset) -> Map<String, Value> {
    let table = match preset {
        Preset::Debugpy => json!({
            "supportsCompletionsRequest": true, "supportsConditionalBreakpoints": true,
            "supportsConfigurationDoneRequest": true, "supportsDebuggerProperties": true,
            "supportsDelayedStackTraceLoading": true, "supportsEvaluateForHovers": true,
            "supportsExceptionInfoRequest": true, "supportsExceptionOptions": true,
            "supportsFunctionBreakpoints": true, "supportsHitConditionalBreakpoints": true,
            "supportsLogPoints": true, "supportsModulesRequest": true,
            "supportsSetExpression": true, "supportsSetVariable": true,
            "supportsValueFormattingOptions": true, "supportsTerminateDebuggee": true,
            "supportsTerminateRequest": true, "supportsGotoTargetsRequest": true,
            "supportsClipboardContext": true, "supportsStepInTargetsRequest": true,
            "exceptionBreakpointFilters": [
                {"filter": "raised", "label": "Raised Exceptions", "default": false, "description": "Break whenever any exception is raised."},
                {"filter": "uncaught", "label": "Uncaught Exceptions", "default": true, "description": "Break when the process is exiting due to unhandled exception."},
                {"filter": "userUnhandled", "label": "User Uncaught Exceptions", "default": false, "description": "Break when exception escapes into library code."}
            ]
        }),
        Preset::LldbDap | Preset::Codelldb => json!({
            "supportTerminateDebuggee": true, "supportsCompletionsRequest": true,
            "supportsConditionalBreakpoints": true, "supportsConfigurationDoneRequest": true,
            "supportsDelayedStackTraceLoading": true, "supportsDisassembleRequest": true,
            "supportsEvaluateForHovers": true, "supportsExceptionInfoRequest": true,
            "supportsFunctionBreakpoints": true, "supportsHitConditionalBreakpoints": true,
            "supportsLogPoints": true, "supportsModulesRequest": true,
            "supportsSetVariable": true
        }),
        Preset::Dlv => json!({
            "supportsConfigurationDoneRequest": true, "supportsFunctionBreakpoints": true,
            "supportsConditionalBreakpoints": true, "supportsEvaluateForHovers": true,
            "supportsSetVariable": true, "supportsExceptionInfoRequest": true,
            "supportsDelayedStackTraceLoading": true, "supportsLogPoints": true,
            "supportsDisassembleRequest": true, "supportsClipboardContext": true,
            "supportsSteppingGranularity": true, "supportsInstructionBreakpoints": true
        }),
        Preset::JsDebug | Preset::Netcoredbg => json!({
            "supportsConfigurationDoneRequest": true, "supportsConditionalBreakpoints": true,
            "supportsEvaluateForHovers": true, "supportsFunctionBreakpoints": true,
            "supportsSetVariable": true
        }),
    };
    match table {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// For an adapter not known until `launch`: what every preset agrees on.
pub fn baseline() -> Map<String, Value> {
    let mut tables = Preset::ALL.into_iter().map(for_preset);
    let mut common = tables.next().unwrap_or_default();
    for table in tables {
        common.retain(|key, value| table.get(key) == Some(value));
    }
    common
}

/// The capabilities that differ between what the client was told and what the adapter
/// reports; a capability the client was told but the adapter lacks becomes `false`.
pub fn changed(told: &Map<String, Value>, actual: &Map<String, Value>) -> Map<String, Value> {
    let mut changes = Map::new();
    for (key, value) in actual {
        if told.get(key) != Some(value) {
            changes.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in told {
        if !actual.contains_key(key) {
            let cleared = match value {
                Value::Array(_) => json!([]),
                _ => json!(false),
            };
            changes.insert(key.clone(), cleared);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_is_what_all_presets_share() {
        let base = baseline();
        assert_eq!(
            base.get("supportsConfigurationDoneRequest"),
            Some(&json!(true))
        );
        assert!(!base.contains_key("supportsTerminateRequest"));
    }

    #[test]
    fn changes_cover_added_altered_and_missing() {
        let told = json!({"a": true, "b": true, "f": [1]});
        let actual = json!({"a": true, "c": true});
        let (Value::Object(told), Value::Object(actual)) = (told, actual) else {
            panic!("objects")
        };
        let diff = changed(&told, &actual);
        assert_eq!(Value::Object(diff), json!({"c": true, "b": false, "f": []}));
    }
}
