//! Command variants: a drawn request becomes, now and then, a sibling command that writes the
//! same way but replies differently (SET → GETSET, DEL → GETDEL, MSET → MSETNX; on value-domain
//! keys also SET → SETRANGE, SET → APPEND and GET → GETDEL). The variant is chosen on its own random stream
//! after the request is drawn, so a seed whose variant rate is 0 runs exactly as it did before
//! variants existed.

use quill_core::command::SetCondition;
use quill_core::Request;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The variants' random stream and rate.
pub struct Variants {
    pub rng: ChaCha8Rng,
    /// Percent of eligible requests turned into a variant (0 in half the seeds).
    pub percent: u32,
}

impl Variants {
    /// Draws the rate from `rng`, the variants' own stream.
    pub fn new(mut rng: ChaCha8Rng) -> Variants {
        let percent = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(5..=40) };
        Variants { rng, percent }
    }

    pub fn chosen(&mut self) -> bool {
        self.percent > 0 && self.rng.gen_range(0..100) < self.percent
    }

    /// A register-family request (`k` keys) or its variant.
    pub fn register(&mut self, request: Request) -> Request {
        if !self.chosen() {
            return request;
        }
        match request {
            Request::Set { key, value, condition } => Request::GetSet { key, value, condition },
            Request::Del { mut keys } if keys.len() == 1 => Request::GetDel { key: keys.remove(0) },
            Request::MSet { pairs } => Request::MSetNx { pairs },
            other => other,
        }
    }

    /// A value-domain request or its variant (judged by the exact model in domains.rs).
    pub fn domain(&mut self, request: Request) -> Request {
        if !self.chosen() {
            return request;
        }
        match request {
            Request::Set { key, value, .. } if self.rng.gen_bool(0.3) => Request::Append { key, value },
            Request::Set { key, value, .. } if self.rng.gen_bool(0.5) => {
                let condition =
                    [SetCondition::Always, SetCondition::IfAbsent, SetCondition::IfPresent][self.rng.gen_range(0..3)];
                Request::GetSet { key, value, condition }
            }
            Request::Set { key, value, .. } => {
                let offset = match self.rng.gen_range(0..20) {
                    0 => 512 * 1024 * 1024 - 1, // past Redis's bound with any two bytes
                    1 => 1 << 20,               // past the engine's value limit
                    _ => self.rng.gen_range(0..24),
                };
                Request::SetRange { key, offset, value }
            }
            Request::Get { key } => Request::GetDel { key },
            other => other,
        }
    }
}
