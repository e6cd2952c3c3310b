//! Helpers for domains that serve devices (the driver domains): checks made
//! on a `Connect` before anything is mapped.

/// For a backend given a `Connect`: whether the frontend speaks `ours`, the
/// version of the protocol this backend serves. If not, says so and
/// refuses it (`OtherVersion`): rings read with another layout would be
/// nonsense to both sides.
pub fn speaks(
    connect: &crate::ipc_abi::proto::control::ControlMessage,
    ours: u32,
    backend: &str,
) -> bool {
    if connect.version_or_status == ours {
        return true;
    }
    crate::println!(
        "{}: domain {} speaks version {} of the protocol, not {}: refused",
        backend,
        connect.peer,
        connect.version_or_status,
        ours
    );
    let _ = crate::control::refuse_connect(
        connect,
        crate::ipc_abi::proto::control::Status::OtherVersion,
    );
    false
}
