//! WASI 0.2 components and the interfaces nodes give them: each node reports the interfaces it
//! links ([`crate::Capabilities::wasi_interfaces`]), and the coordinator refuses at submit a
//! component that imports one no node gives, with the sentence of
//! [`component_import_refusal`].

/// The export that makes a component a command: nodes call its `run`.
pub const COMMAND_EXPORT: &str = "wasi:cli/run";

/// Interfaces a node may report; more is a malformed registration.
pub const WASI_INTERFACES_MAX: usize = 64;

/// Bytes of one interface name a node reports.
pub const WASI_INTERFACE_BYTES_MAX: usize = 128;

/// Why a component may not import `name` (e.g. `wasi:sockets/tcp@0.2.0`) from nodes that give
/// the WASI 0.2 interfaces `offered` (named without versions), or `None` if they give it.
pub fn component_import_refusal(name: &str, offered: &[String]) -> Option<String> {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if !offered.iter().any(|given| given == interface) {
        let why = if interface.starts_with("wasi:sockets/") || interface.starts_with("wasi:http/") {
            "tasks have no network access"
        } else {
            "nodes give components the wasi:cli/command world of WASI 0.2 without sockets"
        };
        return Some(format!(
            "a component that imports {name}, which no node of the pool provides: {why}; \
             build it without that import"
        ));
    }
    if !version.starts_with("0.2.") {
        return Some(format!(
            "a component that imports {name}; nodes provide WASI 0.2, so build it for \
             wasm32-wasip2"
        ));
    }
    None
}

/// Whether `name` is the command export, at any WASI 0.2 version.
pub fn is_command_export(name: &str) -> bool {
    name.split_once('@').is_some_and(|(interface, version)| {
        interface == COMMAND_EXPORT && version.starts_with("0.2.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_interfaces_at_0_2_pass_and_everything_else_is_named_in_the_refusal() {
        let offered = vec!["wasi:io/streams".to_owned(), "wasi:cli/stdout".to_owned()];
        assert_eq!(
            component_import_refusal("wasi:io/streams@0.2.0", &offered),
            None
        );
        let sockets = component_import_refusal("wasi:sockets/tcp@0.2.0", &offered).unwrap();
        assert!(sockets.contains("wasi:sockets/tcp@0.2.0") && sockets.contains("network"));
        let custom = component_import_refusal("acme:db/query", &offered).unwrap();
        assert!(custom.contains("acme:db/query"), "{custom}");
        let preview3 = component_import_refusal("wasi:cli/stdout@0.3.0-rc", &offered).unwrap();
        assert!(preview3.contains("wasm32-wasip2"), "{preview3}");
        assert!(component_import_refusal("wasi:cli/stdout", &offered).is_some());
        assert!(is_command_export("wasi:cli/run@0.2.3"));
        assert!(!is_command_export("wasi:cli/run@0.3.0"));
        assert!(!is_command_export("wasi:http/incoming-handler@0.2.0"));
    }
}
