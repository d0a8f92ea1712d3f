//! Local addresses for cluster Services: each Service gets its own loopback address in
//! 127.1.0.0/16, so every one of its ports can be listened on as is (two Services on
//! port 80 do not collide) and no admin rights are needed to bind them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Hands out addresses; a Service keeps its address for the whole session, even when
/// other Services come and go.
#[derive(Debug, Default)]
pub struct AddressBook {
    assigned: HashMap<(String, String), Ipv4Addr>,
    next: u16,
}

/// Why no address could be given.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} Services to forward: 127.1.0.0/16 is full")]
pub struct AddressesExhausted(usize);

impl AddressBook {
    /// A book whose addresses start at a place derived from `seed` (the session id), so
    /// two sessions on one machine rarely reach for the same addresses.
    pub fn seeded(seed: &str) -> AddressBook {
        let hash = seed
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        AddressBook {
            next: (hash % 200) as u16 * 254,
            ..AddressBook::default()
        }
    }

    /// Gives `namespace/service` a new address (its current one is taken on this machine).
    pub fn reassign(
        &mut self,
        namespace: &str,
        service: &str,
    ) -> Result<Ipv4Addr, AddressesExhausted> {
        self.assigned
            .remove(&(namespace.to_string(), service.to_string()));
        self.address(namespace, service)
    }

    /// The address of `namespace/service`, assigned on first use.
    pub fn address(
        &mut self,
        namespace: &str,
        service: &str,
    ) -> Result<Ipv4Addr, AddressesExhausted> {
        let key = (namespace.to_string(), service.to_string());
        if let Some(address) = self.assigned.get(&key) {
            return Ok(*address);
        }
        // Skip .0 and .255 of each /24 so no address looks like a network or broadcast.
        if self.assigned.len() >= 254 * 256 {
            return Err(AddressesExhausted(self.assigned.len()));
        }
        let index = self.next % (254 * 256);
        let (third, fourth) = (index / 254, index % 254 + 1);
        self.next += 1;
        let address = Ipv4Addr::new(127, 1, third as u8, fourth as u8);
        self.assigned.insert(key, address);
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stable_and_distinct() {
        let mut book = AddressBook::default();
        let a = book.address("todo", "stats-api").expect("address");
        let b = book.address("todo", "todo-api").expect("address");
        assert_eq!(a, Ipv4Addr::new(127, 1, 0, 1));
        assert_ne!(a, b);
        assert_eq!(book.address("todo", "stats-api").expect("address"), a);
        let seeded = AddressBook::seeded("1796-1234")
            .address("todo", "a")
            .expect("address");
        assert_eq!(seeded.octets()[..2], [127, 1]);
        let mut moved = AddressBook::default();
        let first = moved.address("todo", "a").expect("address");
        assert_ne!(moved.reassign("todo", "a").expect("address"), first);
        for i in 0..300 {
            let address = book.address("x", &format!("s{i}")).expect("address");
            assert!(address.octets()[3] != 0 && address.octets()[3] != 255);
        }
    }
}
