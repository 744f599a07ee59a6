//! The log's flusher and the leader's side of group commit (this
//! module's parent has the protocol): waiting until an LSN is durable,
//! electing a leader, and what the leader does with its batch.

use super::*;

impl Wal {
    /// The flusher: leads a sync whenever callbacks, or committers blocked
    /// in [`CommitTicket::wait`] while others commit too, wait for one,
    /// until [`Wal::stop_flusher`]. Run it on a thread of its own.
    ///
    /// Why a thread leads rather than a committer: when a sync completes,
    /// the flusher is already running and starts the next one at once,
    /// while an elected committer would first have to be woken and
    /// scheduled, behind every committer the sync just released. A lone
    /// committer still leads its own sync (no hand-off on its latency).
    pub fn run_flusher(&self) {
        // What the last round this flusher led still owes: paid while the
        // next round's write and sync are in flight, or before it waits.
        let mut owed = Owed::nothing(&self.rounds);
        let mut st = lock(&self.state);
        st.flusher_running = true;
        loop {
            if st.flusher_stop {
                st.flusher_running = false;
                self.kick.notify_all();
                self.durable_cv.notify_all();
                drop(st);
                owed.pay();
                self.rounds.end_all();
                return;
            }
            let blocked = st.blocked_target.filter(|&l| l >= st.durable);
            let wanted = (!st.waiters.is_empty()).then(|| st.waiters.target());
            let target = match (blocked, wanted) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None if !owed.is_nothing() => {
                        st = self.pay(st, &mut owed);
                        continue;
                    }
                    // Write-behind nobody asked for: committers ask only a
                    // running flusher, so what they appended before this
                    // thread first ran would otherwise wait for the next
                    // commit (test `a_flusher_that_starts_late_writes_
                    // behind_what_was_pending`).
                    None if st.append - st.durable >= WRITE_BEHIND_BYTES => st.append,
                    None => {
                        st.flusher_idle = true;
                        st = wait(&self.kick, st);
                        st.flusher_idle = false;
                        continue;
                    }
                },
            };
            if st.durable > target {
                st.blocked_target = None;
                continue;
            }
            if st.poisoned.is_some() || st.leader {
                // Nothing to lead (a committer leads, or nothing will be
                // led again): pay what is owed before waiting.
                if !owed.is_nothing() {
                    st = self.pay(st, &mut owed);
                } else if st.leader {
                    st = wait(&self.durable_cv, st);
                } else {
                    st = wait(&self.kick, st);
                }
                continue;
            }
            if self.gather().is_some() && !owed.is_nothing() {
                // A `Group` leader waits for committers before it writes:
                // pay first, not after the gathering.
                st = self.pay(st, &mut owed);
                continue;
            }
            // A failure poisons the log and reaches every waiter from
            // `lead`; the flusher itself just goes on.
            st.leader = true;
            let prev = std::mem::replace(&mut owed, Owed::nothing(&self.rounds));
            st = match self.lead(st, self.gather(), prev) {
                Ok((st, next)) => {
                    owed = next;
                    st
                }
                Err(_) => lock(&self.state),
            };
        }
    }

    /// Pays what a round owes, outside the state mutex.
    fn pay<'a>(&'a self, st: Guard<'a>, owed: &mut Owed<'a>) -> Guard<'a> {
        drop(st);
        std::mem::replace(owed, Owed::nothing(&self.rounds)).pay();
        lock(&self.state)
    }

    pub(super) fn wait_until(&self, lsn: Lsn, gather: Option<Duration>) -> Result<(), WalError> {
        // Fast path: already durable, no lock. Poison is sticky even for
        // LSNs that were durable before it: a poisoned log answers nothing.
        if self.durable.load(Ordering::Acquire) > lsn.0 && !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut st = lock(&self.state);
        if lsn.0 >= st.append {
            return Err(WalError::BeyondEnd {
                requested: lsn,
                end: Lsn(st.append),
            });
        }
        loop {
            check_poison(&st)?;
            if st.durable > lsn.0 {
                return Ok(());
            }
            if self.flusher_leads(&st) {
                // The flusher leads; this committer only sleeps, until the
                // round that covers its record has ended (`rounds.rs`).
                let round = self.queue_for_flusher(&mut st, lsn.0);
                drop(st);
                self.rounds.wait_for(round);
                // Durable: done without the state mutex, which the rest of
                // the round's sleepers, appenders and the flusher want.
                if self.durable.load(Ordering::Acquire) > lsn.0
                    && !self.poisoned.load(Ordering::Acquire)
                {
                    return Ok(());
                }
                st = lock(&self.state);
                continue;
            }
            st = self.make_progress(st, gather)?;
        }
    }

    /// Leads a flush if nobody is, else waits for the running one to finish.
    pub(super) fn make_progress<'a>(
        &'a self,
        mut st: Guard<'a>,
        gather: Option<Duration>,
    ) -> Result<Guard<'a>, WalError> {
        if st.leader {
            Ok(self.durable_cv.wait(st).unwrap_or_else(|p| p.into_inner()))
        } else {
            st.leader = true;
            let (st, owed) = self.lead(st, gather, Owed::nothing(&self.rounds))?;
            // Waking sleepers may happen under the state mutex; callbacks
            // run outside it.
            if owed.calls_back() {
                drop(st);
                owed.pay();
                Ok(lock(&self.state))
            } else {
                owed.pay();
                Ok(st)
            }
        }
    }

    /// One group-commit round, run by the leader. `owed` (the previous
    /// round's wake-ups, see [`Owed`]) is paid once this round's write and
    /// sync are submitted; what this round owes comes back with the guard.
    fn lead<'a>(
        &'a self,
        mut st: Guard<'a>,
        gather: Option<Duration>,
        owed: Owed<'a>,
    ) -> Result<(Guard<'a>, Owed<'a>), WalError> {
        // 1. Group mode: give more committers up to `max_delay` to join,
        //    but only while some committer has not joined yet.
        if let Some(max_delay) = gather {
            let deadline = Instant::now() + max_delay;
            while st.append - st.durable < GROUP_EARLY_FLUSH_BYTES
                && st.poisoned.is_none()
                && self.joined.load(Ordering::SeqCst) < self.committers.load(Ordering::SeqCst)
            {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self
                    .gather_cv
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }

        // 2. Take the batch: every whole record appended so far. `buf` keeps
        //    a copy of the partial block at its end, which the next batch
        //    rewrites with the bytes appended after it.
        let end = st.append;
        let from = st.buf_base;
        let tail = block_floor(end);
        let mut next = std::mem::take(&mut st.spare);
        next.extend_from_slice(&st.buf[(tail - from) as usize..]);
        let batch = std::mem::replace(&mut st.buf, next);
        debug_assert_eq!(batch.len() as u64, end - from);
        st.buf_base = tail;
        let known: Vec<Arc<Segment>> = st
            .segments
            .values()
            .filter(|s| s.end().0 > from)
            .cloned()
            .collect();
        let segments_end = st.segments_end;
        let newest = newest_size(&st.segments);
        st.rounds_led += 1;
        let round = st.rounds_led;
        st.in_flight_end = Some(end);
        drop(st);

        // 3. With the state unlocked (appenders carry on): the batch, padded
        //    with zeros to a whole block, into the aligned staging buffer;
        //    write and sync it, paying what the round before owes once the
        //    I/O is submitted.
        let mut scratch = lock(&self.scratch);
        let len = (block_ceil(end) - from) as usize;
        if scratch.len() < len {
            *scratch = AlignedBuf::zeroed(len);
        }
        scratch[..batch.len()].copy_from_slice(&batch);
        scratch[batch.len()..len].fill(0);
        let mut owed = Some(owed);
        let mut pay = || drop(owed.take());
        let io_started = Instant::now();
        let result = self.write_out(from, &scratch[..len], known, segments_end, newest, &mut pay);
        let io_ns = io_started.elapsed().as_nanos() as u64;
        drop(scratch);
        drop(owed);

        // 4. Publish the outcome and wake every follower.
        let mut st = lock(&self.state);
        let mut batch = batch;
        batch.clear();
        st.spare = batch;
        st.leader = false;
        st.in_flight_end = None;
        self.durable_cv.notify_all();
        match result {
            Ok(created) => {
                for seg in created {
                    st.segments_end = seg.end().0;
                    st.segments.insert(seg.start.0, seg);
                }
                st.durable = end;
                self.durable.store(end, Ordering::Release);
                self.syncs.fetch_add(1, Ordering::Relaxed);
                self.sync_ns.fetch_add(io_ns, Ordering::Relaxed);
                // The round ends once its outcome is published.
                let ring = self.rounds.mark_ended(round);
                let ready = st.waiters.take_ready(end);
                Ok((st, Owed::round(&self.rounds, ring, ready)))
            }
            Err(e) => {
                tracing::error!(error = %e, durable = st.durable, "log write or sync failed; the log is poisoned");
                let cause = Arc::new(e);
                st.poisoned = Some(Arc::clone(&cause));
                self.poisoned.store(true, Ordering::Release);
                let waiting = st.waiters.take_all();
                drop(st);
                // Committers asleep for a later round than this one (their
                // records came after its snapshot) would sleep for ever: no
                // round is led on a poisoned log. End them all; each finds
                // the poison (`rounds.rs`, step 4). A history test under
                // injected crashes hung here with two committers asleep.
                // This ends this round too.
                self.rounds.end_all();
                for (_, f) in waiting {
                    f(Err(WalError::Poisoned {
                        cause: Arc::clone(&cause),
                    }));
                }
                Err(WalError::Poisoned { cause })
            }
        }
    }

    /// Writes `data` at LSN `from` across the segments it covers, creating
    /// missing ones, syncing each segment written, then prepares the
    /// next segment if this one is half used. Returns the created segments.
    /// `newest` is the size of the newest segment: each one created doubles
    /// it ([`super::WalOptions::next_segment_size`]).
    fn write_out(
        &self,
        from: u64,
        data: &[u8],
        mut segs: Vec<Arc<Segment>>,
        mut segments_end: u64,
        mut newest: Option<u64>,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<Vec<Arc<Segment>>, WalError> {
        let to = from + data.len() as u64;
        // 1. Roll over: preallocate the segments the batch reaches into.
        let mut created = Vec::new();
        while segments_end < to {
            let seg = Arc::new(segment::create(
                &self.dir,
                Lsn(segments_end),
                self.opts.next_segment_size(newest),
                &self.opts.opener,
            )?);
            segments_end = seg.end().0;
            newest = Some(seg.size);
            created.push(Arc::clone(&seg));
            segs.push(seg);
        }
        // 2. One linked write + fdatasync per segment file (blocks never
        //    span segments: sizes are whole blocks), so the sync is queued
        //    with the write, one system call per file (io_uring); the first
        //    one runs `meanwhile` while it is in flight.
        for seg in segs.iter().filter(|s| s.start.0 < to && s.end().0 > from) {
            let lo = from.max(seg.start.0);
            let hi = to.min(seg.end().0);
            let piece = &data[(lo - from) as usize..(hi - from) as usize];
            seg.file
                .write_and_sync_meanwhile(
                    &[WriteOp {
                        offset: lo - seg.start.0,
                        data: piece,
                    }],
                    meanwhile,
                )
                .map_err(|source| WalError::Io {
                    path: seg.path.clone(),
                    source,
                })?;
        }
        // 4. Keep the next segment ready once this one is half used, so a
        //    rollover rarely has to open a file. Failing here loses nothing
        //    (out of descriptors, say): it is retried at the next flush, and
        //    only a rollover with no segment ready poisons the log.
        let newest_len = newest.unwrap_or(self.opts.segment_size);
        if segments_end.saturating_sub(to) < newest_len / 2 {
            match segment::create(
                &self.dir,
                Lsn(segments_end),
                self.opts.next_segment_size(newest),
                &self.opts.opener,
            ) {
                Ok(seg) => created.push(Arc::new(seg)),
                Err(e) => {
                    tracing::warn!(error = %e, "preparing the next log segment failed; retried at the next flush")
                }
            }
        }
        Ok(created)
    }
}
