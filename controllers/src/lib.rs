//! Controllers of the Mall operator. Each controller is a pipeline, one module per step:
//! **validate** (pure) → **build** the desired children (pure functions of the spec) →
//! **apply** (server-side apply, the only step with side effects) → **status**.
//!
//! Contract: everything here except the apply and status writers is pure — no client, no clock,
//! no environment; time, randomness and metrics enter through small traits.

pub mod autoscaler;
pub mod build;
pub mod clusters;
pub mod cnpg;
pub mod externaldns;
pub mod failover;
pub mod gateway;
pub mod reconcile;
pub mod validate;
pub mod watch;

#[cfg(test)]
pub(crate) mod testing;
