//! Planning: the checks made before any request, and the segment plan. See [`Plan`].

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::{MAX_SEGMENTS, MediaCategory};
use crate::scheduler::{PlanContext, Strategy};

/// One planned APPEND: which bytes of the source go under which `segment_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// The `segment_index`, 0..=999.
    pub index: u32,
    /// Offset of the first byte in the source.
    pub offset: u64,
    /// Payload bytes.
    pub len: u64,
}

impl Segment {
    /// The offset just past the segment's last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The segments planned so far for one upload.
///
/// Segments are planned one at a time, just before each is first sent, so an adaptive
/// [`Strategy`] can change the chunk size as it learns. Whatever it answers, each segment is
/// clamped to `[min_chunk, max_chunk]` and to what is left of the file, where
/// `min_chunk = ceil(remaining_bytes / remaining_segments)` keeps the whole file within the
/// 1000 segment indices and `max_chunk` is the protocol's per-APPEND payload limit. The
/// plan derives serde's traits, so a checkpoint can record it.
///
/// ```
/// use chunkwise::engine::Plan;
/// use chunkwise::scheduler::FixedStrategy;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut plan = Plan::new(10, 4).unwrap();
/// let mut s = FixedStrategy::new(4, 1, Duration::from_secs(1));
/// let now = tokio::time::Instant::now();
/// while plan.next_segment(&mut s, now).is_some() {}
/// let lens: Vec<u64> = plan.segments().iter().map(|s| s.len).collect();
/// assert_eq!(lens, [4, 4, 2]);
/// assert!(plan.is_complete());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    total_bytes: u64,
    max_chunk: u64,
    segments: Vec<Segment>,
}

impl Plan {
    /// An empty plan for `total_bytes`, with segments of at most `max_chunk` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `total_bytes` is 0 or more than
    /// [`MAX_SEGMENTS`]` × max_chunk`; [`ErrorKind::InvalidConfig`] if `max_chunk` is 0.
    pub fn new(total_bytes: u64, max_chunk: u64) -> Result<Plan> {
        if total_bytes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the source is empty; there is nothing to upload",
            ));
        }
        if max_chunk == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "the protocol's per-APPEND payload limit is 0 bytes",
            ));
        }
        let most = u64::from(MAX_SEGMENTS).saturating_mul(max_chunk);
        if total_bytes > most {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the source is {total_bytes} bytes, more than {MAX_SEGMENTS} segments of at \
                     most {max_chunk} bytes can carry ({most} bytes)"
                ),
            ));
        }
        Ok(Plan {
            total_bytes,
            max_chunk,
            segments: Vec::new(),
        })
    }

    /// Plans the next segment, asking `strategy` for its size; `None` once the whole source
    /// is planned (or, for a plan deserialised from inconsistent data, when no segment index
    /// is left).
    pub fn next_segment(&mut self, strategy: &mut dyn Strategy, now: Instant) -> Option<Segment> {
        self.plan_next(strategy, now).map(|(segment, _, _)| segment)
    }

    /// [`next_segment`](Plan::next_segment), also returning what the strategy was told and
    /// what it answered before the clamp.
    pub(crate) fn plan_next(
        &mut self,
        strategy: &mut dyn Strategy,
        now: Instant,
    ) -> Option<(Segment, PlanContext, u64)> {
        let remaining_bytes = self.remaining_bytes();
        let remaining_segments = self.remaining_segments();
        if remaining_bytes == 0 || remaining_segments == 0 {
            return None;
        }
        let min_chunk = remaining_bytes.div_ceil(u64::from(remaining_segments));
        let ctx = PlanContext {
            now,
            remaining_bytes,
            remaining_segments,
            min_chunk,
            max_chunk: self.max_chunk,
        };
        let wanted = strategy.chunk_size(&ctx);
        // Not `clamp`: it panics when min > max, which a consistent plan never has but a
        // deserialised one might.
        let len = wanted
            .min(self.max_chunk)
            .max(min_chunk)
            .min(remaining_bytes);
        let segment = Segment {
            index: MAX_SEGMENTS - remaining_segments,
            offset: self.planned_bytes(),
            len,
        };
        tracing::debug!(
            segment = segment.index,
            offset = segment.offset,
            len,
            wanted,
            min_chunk,
            max_chunk = self.max_chunk,
            "planned segment"
        );
        self.segments.push(segment);
        Some((segment, ctx, wanted))
    }

    /// The segments planned so far, in index order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The size of the source.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The largest payload of one segment.
    pub fn max_chunk(&self) -> u64 {
        self.max_chunk
    }

    /// Bytes assigned to a segment so far.
    pub fn planned_bytes(&self) -> u64 {
        self.segments.last().map_or(0, Segment::end)
    }

    /// Bytes not yet assigned to a segment.
    pub fn remaining_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.planned_bytes())
    }

    /// Segment indices not yet used.
    pub fn remaining_segments(&self) -> u32 {
        let used = u32::try_from(self.segments.len()).unwrap_or(u32::MAX);
        MAX_SEGMENTS.saturating_sub(used)
    }

    /// Whether every byte of the source is in a segment.
    pub fn is_complete(&self) -> bool {
        self.remaining_bytes() == 0
    }

    /// How many segments the whole upload will have if the rest is cut like the last segment
    /// (at most [`MAX_SEGMENTS`]). Exact for a fixed chunk size.
    pub fn projected_segments(&self) -> u32 {
        let chunk = self
            .segments
            .last()
            .map_or(self.max_chunk, |s| s.len)
            .max(1);
        let rest = self.remaining_bytes().div_ceil(chunk);
        let planned = u64::try_from(self.segments.len()).unwrap_or(u64::MAX);
        let total = planned.saturating_add(rest).min(u64::from(MAX_SEGMENTS));
        u32::try_from(total).unwrap_or(MAX_SEGMENTS)
    }
}

impl Plan {
    /// Checks that a plan read back from a checkpoint is one [`Plan::new`] and
    /// [`Plan::next_segment`] could have made: at most [`MAX_SEGMENTS`] segments with indices
    /// `0..n` in order, each non-empty, at most `max_chunk` bytes and starting where the
    /// previous one ended, within `total_bytes`, and the whole source within the segment
    /// budget. Returns what is wrong, as text.
    pub(crate) fn check_consistent(&self) -> std::result::Result<(), String> {
        if self.total_bytes == 0 || self.max_chunk == 0 {
            return Err("the plan has a zero size or chunk limit".to_string());
        }
        if self.total_bytes > u64::from(MAX_SEGMENTS).saturating_mul(self.max_chunk) {
            return Err("the plan's source does not fit in 1000 segments".to_string());
        }
        if self.segments.len() > MAX_SEGMENTS as usize {
            return Err(format!("the plan has {} segments", self.segments.len()));
        }
        let mut next = 0u64;
        for (i, s) in self.segments.iter().enumerate() {
            if s.index as usize != i || s.offset != next || s.len == 0 || s.len > self.max_chunk {
                return Err(format!(
                    "segment {i} of the plan (index {}, offset {}, {} bytes) does not follow \
                     the previous one",
                    s.index, s.offset, s.len
                ));
            }
            next = s.end();
        }
        if next > self.total_bytes {
            return Err("the plan's segments run past the end of the source".to_string());
        }
        let room = u64::from(self.remaining_segments()).saturating_mul(self.max_chunk);
        if self.remaining_bytes() > room {
            return Err("the rest of the source does not fit in the segments left".to_string());
        }
        Ok(())
    }
}

/// Checks a source of `total_bytes` against its category's documented size limit.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] if the source is larger than
/// [`MediaCategory::max_bytes`].
pub fn check_category_limit(total_bytes: u64, category: Option<MediaCategory>) -> Result<()> {
    match category {
        Some(c) if total_bytes > c.max_bytes() => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the source is {total_bytes} bytes, over the {} bytes allowed for {c}",
                c.max_bytes()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MIB;
    use crate::scheduler::{FixedStrategy, Observation};
    use proptest::prelude::proptest;
    use std::time::Duration;

    fn fixed(chunk: u64) -> FixedStrategy {
        FixedStrategy::new(chunk, 1, Duration::from_secs(1))
    }

    fn plan_all(total: u64, max: u64, strategy: &mut dyn Strategy) -> Plan {
        let mut plan = Plan::new(total, max).unwrap();
        let now = Instant::now();
        while plan.next_segment(strategy, now).is_some() {}
        plan
    }

    /// Every byte covered exactly once, in order; no segment empty or above `max`;
    /// indices 0.. consecutive and within the 1000-segment budget.
    fn assert_covers(plan: &Plan, total: u64, max: u64) {
        assert!(plan.is_complete());
        let segs = plan.segments();
        assert!(!segs.is_empty());
        assert!(
            segs.len() <= MAX_SEGMENTS as usize,
            "{} segments",
            segs.len()
        );
        let mut next = 0;
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.index as usize, i);
            assert_eq!(s.offset, next, "gap or overlap at segment {i}");
            assert!(
                s.len >= 1 && s.len <= max,
                "segment {i} has {} bytes",
                s.len
            );
            next = s.end();
        }
        assert_eq!(next, total);
    }

    #[test]
    fn exactly_one_chunk() {
        let plan = plan_all(4 * MIB, 5 * MIB, &mut fixed(4 * MIB));
        assert_eq!(
            plan.segments(),
            [Segment {
                index: 0,
                offset: 0,
                len: 4 * MIB
            }]
        );
    }

    #[test]
    fn one_byte_over_one_chunk() {
        let plan = plan_all(4 * MIB + 1, 5 * MIB, &mut fixed(4 * MIB));
        let lens: Vec<u64> = plan.segments().iter().map(|s| s.len).collect();
        assert_eq!(lens, [4 * MIB, 1]);
        assert_covers(&plan, 4 * MIB + 1, 5 * MIB);
    }

    #[test]
    fn one_byte() {
        let plan = plan_all(1, 5 * MIB, &mut fixed(4 * MIB));
        assert_eq!(
            plan.segments(),
            [Segment {
                index: 0,
                offset: 0,
                len: 1
            }]
        );
        assert_eq!(plan.projected_segments(), 1);
    }

    #[test]
    fn file_needing_more_than_1000_chunks_grows_the_chunk() {
        let total = 1000 * 4 * MIB + 12_345;
        let plan = plan_all(total, 5 * MIB, &mut fixed(4 * MIB));
        assert_covers(&plan, total, 5 * MIB);
        assert_eq!(plan.segments().len(), 1000);
        assert!(plan.segments()[0].len > 4 * MIB);
        // The largest file the budget allows fills all 1000 segments to the limit.
        let plan = plan_all(1000 * 5 * MIB, 5 * MIB, &mut fixed(1));
        assert!(plan.segments().iter().all(|s| s.len == 5 * MIB));
        assert_eq!(plan.segments().len(), 1000);
        assert_eq!(plan.remaining_segments(), 0);
    }

    #[test]
    fn strategy_sees_the_floor_and_ceiling() {
        #[derive(Debug)]
        struct Spy(Vec<PlanContext>);
        impl Strategy for Spy {
            fn chunk_size(&mut self, ctx: &PlanContext) -> u64 {
                self.0.push(*ctx);
                u64::MAX
            }
            fn max_in_flight(&self, _: Instant) -> usize {
                1
            }
            fn start_attempt(&mut self, _: Instant, _: u64) -> Duration {
                Duration::from_secs(1)
            }
            fn observe(&mut self, _: &Observation) {}
        }
        let mut spy = Spy(Vec::new());
        let plan = plan_all(2500, 1000, &mut spy);
        assert_eq!(spy.0.len(), 3);
        assert_eq!(spy.0[0].min_chunk, 3);
        assert_eq!(spy.0[0].max_chunk, 1000);
        assert_eq!(spy.0[0].remaining_bytes, 2500);
        assert_eq!(spy.0[1].remaining_segments, 999);
        assert_eq!(plan.segments()[2].len, 500);
    }

    #[test]
    fn empty_and_too_big_are_invalid_input() {
        assert_eq!(
            Plan::new(0, 10).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let e = Plan::new(1000 * 10 + 1, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("1000 segments"), "{e}");
        assert!(Plan::new(1000 * 10, 10).is_ok());
        assert_eq!(
            Plan::new(1, 0).unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
        let e = check_category_limit(5 * MIB + 1, Some(MediaCategory::TweetImage)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(check_category_limit(5 * MIB, Some(MediaCategory::TweetImage)).is_ok());
        assert!(check_category_limit(u64::MAX, None).is_ok());
    }

    #[test]
    fn plan_round_trips_through_serde() {
        let mut plan = Plan::new(100, 30).unwrap();
        let mut s = fixed(30);
        plan.next_segment(&mut s, Instant::now());
        let json = serde_json::to_string(&plan).unwrap();
        let mut back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        while back.next_segment(&mut s, Instant::now()).is_some() {}
        assert_covers(&back, 100, 30);
    }

    #[test]
    fn inconsistent_deserialised_plan_does_not_panic() {
        let json = r#"{"total_bytes":100,"max_chunk":0,"segments":[]}"#;
        let mut plan: Plan = serde_json::from_str(json).unwrap();
        let seg = plan.next_segment(&mut fixed(10), Instant::now()).unwrap();
        assert_eq!(seg.len, 1);
    }

    /// A strategy that answers a scripted sequence of sizes, cycling.
    #[derive(Debug)]
    struct Script(Vec<u64>, usize);
    impl Strategy for Script {
        fn chunk_size(&mut self, _: &PlanContext) -> u64 {
            let v = self.0[self.1 % self.0.len()];
            self.1 += 1;
            v
        }
        fn max_in_flight(&self, _: Instant) -> usize {
            1
        }
        fn start_attempt(&mut self, _: Instant, _: u64) -> Duration {
            Duration::from_secs(1)
        }
        fn observe(&mut self, _: &Observation) {}
    }

    proptest! {
        #[test]
        fn plan_covers_every_byte_once_within_limits(
            max in 1u64..=6 * MIB,
            fill in 0.0f64..=1.0,
            chunks in proptest::collection::vec(0u64..=8 * MIB, 1..8),
        ) {
            let most = 1000 * max;
            let total = ((most as f64 * fill) as u64).clamp(1, most);
            let mut s = Script(chunks, 0);
            let plan = plan_all(total, max, &mut s);
            assert_covers(&plan, total, max);
        }
    }
}
