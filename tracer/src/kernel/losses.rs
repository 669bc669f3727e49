//! Reads the kernel's per-CPU loss counters.
use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use serde::Serialize;
use tracer_common::Loss;

/// Totals over all CPUs, one per `Loss` reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLosses([u64; Loss::ALL.len()]);

impl KernelLosses {
    pub fn read(map: &PerCpuArray<MapData, u64>) -> Result<Self> {
        let mut totals = [0u64; Loss::ALL.len()];
        for (slot, reason) in totals.iter_mut().zip(Loss::ALL) {
            let per_cpu = map
                .get(&(reason as u32), 0)
                .with_context(|| format!("reading loss counter {}", reason.name()))?;
            *slot = per_cpu.iter().sum();
        }
        Ok(Self(totals))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `{"ringbuf_full_data": N, ...}` in `Loss` order.
    pub fn by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Loss::ALL
            .iter()
            .map(|r| r.name())
            .zip(self.0.iter().copied())
    }
}

impl Serialize for KernelLosses {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.by_reason())
    }
}
