//! The guest SDK's copy of the ABI's limits (`guests/sdk/src/abi.rs`, pure
//! data, compiled here as it is) says what the host enforces.

#[path = "../../guests/sdk/src/abi.rs"]
#[allow(dead_code)]
mod sdk;

use rime_faas::limits as host;

#[test]
fn the_sdk_states_the_limits_the_host_enforces() {
    assert_eq!(sdk::MAX_KEY_LEN, host::MAX_KEY_LEN);
    assert_eq!(sdk::MAX_VALUE_LEN, host::MAX_VALUE_LEN);
    assert_eq!(sdk::MAX_INPUT_LEN, host::MAX_INPUT_LEN);
    assert_eq!(sdk::MAX_OUTPUT_LEN, host::MAX_OUTPUT_LEN);
    assert_eq!(sdk::MAX_NAMESPACE_LEN, host::MAX_NAMESPACE_LEN);
    assert_eq!(sdk::MAX_OPEN_NAMESPACES, host::MAX_OPEN_NAMESPACES);
    assert_eq!(sdk::MAX_WRITE_SET_BYTES, host::MAX_WRITE_SET_BYTES);
    assert_eq!(
        sdk::WRITE_SET_ENTRY_OVERHEAD,
        host::WRITE_SET_ENTRY_OVERHEAD
    );
    assert_eq!(sdk::MAX_WRITTEN_BYTES, host::MAX_WRITTEN_BYTES);
    assert_eq!(sdk::MAX_LOG_LEN, host::MAX_LOG_LEN);
    assert_eq!(
        sdk::MAX_LOG_BYTES_PER_INVOCATION,
        host::MAX_LOG_BYTES_PER_INVOCATION
    );
    assert_eq!(
        sdk::MAX_LOG_LINES_PER_INVOCATION,
        host::MAX_LOG_LINES_PER_INVOCATION
    );
}
