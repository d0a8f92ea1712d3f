//! Sequence numbers. Everything sent to the client is renumbered from one counter, so
//! the adapter's numbers (lldb-dap and Delve send `seq: 0` on everything) and the
//! proxy's own events never collide. Reverse requests remember both numbers so the
//! client's answer reaches the adapter with the number the adapter expects.

use std::collections::HashMap;

/// Numbering of messages to the client and the map of open reverse requests.
#[derive(Debug)]
pub struct SeqMap {
    next_to_client: i64,
    reverse: HashMap<i64, i64>,
}

impl Default for SeqMap {
    fn default() -> Self {
        SeqMap {
            next_to_client: 1,
            reverse: HashMap::new(),
        }
    }
}

impl SeqMap {
    /// The number for the next message to the client.
    pub fn next_to_client(&mut self) -> i64 {
        let seq = self.next_to_client;
        self.next_to_client += 1;
        seq
    }

    /// Remembers that the adapter's request `adapter_seq` went to the client as `client_seq`.
    pub fn open_reverse(&mut self, client_seq: i64, adapter_seq: i64) {
        self.reverse.insert(client_seq, adapter_seq);
    }

    /// The adapter's number for the client's answer to `client_seq`, once.
    pub fn close_reverse(&mut self, client_seq: i64) -> Option<i64> {
        self.reverse.remove(&client_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_increase_and_reverse_requests_map_once() {
        let mut seq = SeqMap::default();
        assert_eq!(seq.next_to_client(), 1);
        let client_seq = seq.next_to_client();
        seq.open_reverse(client_seq, 0);
        assert_eq!(seq.close_reverse(client_seq), Some(0));
        assert_eq!(seq.close_reverse(client_seq), None);
    }
}
