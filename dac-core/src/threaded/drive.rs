//! Driving one rank's reductions: faults, exits, silence, repairs, and
//! the letters between ranks.

use super::*;

/// Errors after which a rank is out of the job.
pub(super) fn cuts_off(error: &Error) -> bool {
    matches!(
        error,
        Error::Excluded { .. }
            | Error::Partitioned { .. }
            | Error::Left { .. }
            | Error::Timeout { .. }
    )
}

impl ThreadComm<'_> {
    /// Takes this rank out of the job with `error`, and publishes its exit
    /// (`from_op` is the first reduction it takes no part in).
    pub(super) fn leave_job(&mut self, error: Error, from_op: u64) {
        self.out.get_or_insert(error);
        self.publish_exit(from_op);
    }

    pub(super) fn publish_exit(&mut self, from_op: u64) {
        if self.exits[self.rank].is_some() {
            return;
        }
        let exit = Exit {
            from_op,
            departed: self.departed.iter().copied().collect(),
        };
        self.exits[self.rank] = Some(exit.clone());
        self.presence.publish(self.rank, exit);
        for (to, sender) in self.senders.iter().enumerate() {
            if to != self.rank {
                let _ = sender.try_send(Letter::Exit);
            }
        }
    }

    /// One reduction, from the engine's creation to its outcome.
    pub(super) fn reduce(&mut self, x: &[f64]) -> Result<Reduction> {
        self.take_exits();
        self.check_exclusion()?;
        let reduction = (self.op - 1) as usize;
        if self
            .faults
            .iter()
            .any(|f| matches!(*f, Fault::Leave { at_reduction, .. } if at_reduction == reduction))
        {
            return Err(Error::Left { rank: self.rank });
        }
        let peers: Vec<usize> = self.graph.neighbors(self.rank).collect();
        let setup = MemberSetup {
            id: self.rank,
            members: self.size,
            peers: &peers,
            diameter_bound: self.diameter_bound,
        };
        // A bad input gives an engine that has failed already: driven like
        // any other, it tells the others, so that they fail with its error
        // too instead of waiting for this rank's input.
        let mut engine = Engine::new(self.config, setup, x)?;
        let outcome = self.drive(&mut engine);
        self.departed.extend(engine.status().departed);
        self.last = Some((self.op, engine));
        outcome
    }

    /// Runs `engine` until it finishes, or this rank gives up or is cut off.
    fn drive(&mut self, engine: &mut Engine) -> Result<Reduction> {
        self.apply_departures(engine);
        self.reconfigure(engine);
        let op = self.op;
        let (now, later): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.stash)
            .into_iter()
            .filter(|e| e.op >= op)
            .partition(|e| e.op == op);
        self.stash = later;
        for envelope in &now {
            self.deliver(engine, envelope);
        }
        let max_idle = (self.peer_timeout.min(self.timeout) / 4).max(FIRST_IDLE);
        let mut idle = FIRST_IDLE;
        let mut progress_at = Instant::now();
        let mut next_tick = progress_at + idle;
        loop {
            let mut now = Instant::now();
            self.presence.beat(self.rank, now);
            if self.strike(engine, false)? {
                // Woken from a freeze: its time does not count as waiting.
                now = Instant::now();
                progress_at = now;
                next_tick = now;
            }
            let exited = self.take_exits();
            if exited {
                self.check_exclusion()?;
                self.apply_departures(engine);
            }
            self.drain(engine);
            self.reconfigure(engine);
            self.post(op, engine);
            let progress = engine.advance();
            // A result announced during the exact phase that turned out to
            // be no exact mean: its sender lied, and is cut off.
            for violation in engine.take_misbehaviour() {
                if let Violation::Contradicts { peer, .. } = violation {
                    self.cut_off(engine, peer);
                }
            }
            match progress {
                Progress::Advanced => {
                    progress_at = now;
                    idle = FIRST_IDLE;
                    next_tick = now + idle;
                    continue;
                }
                Progress::Finished => {
                    self.post(op, engine);
                    self.strike(engine, true)?;
                    return engine.take_outcome().unwrap_or_else(|| {
                        Err(Error::transport(
                            TransportKind::Closed,
                            "engine finished without an outcome",
                        ))
                    });
                }
                Progress::Blocked => {}
            }
            if (exited || now >= next_tick) && self.watch(engine) {
                continue;
            }
            if now >= next_tick {
                if now.saturating_duration_since(progress_at) >= self.timeout {
                    return Err(Error::Timeout {
                        rank: self.rank,
                        round: engine.status().round,
                        seconds: self.timeout.as_secs_f64(),
                    });
                }
                engine.tick();
                idle = (idle * 2).min(max_idle);
                next_tick = now + idle;
                continue;
            }
            match self.inbox.recv_timeout(next_tick - now) {
                Ok(letter) => self.take(engine, letter),
                Err(RecvTimeoutError::Timeout) => {}
                // Unreachable: the comm holds a sender to its own inbox.
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::transport(
                        TransportKind::Closed,
                        format!("rank {}: inbox closed", self.rank),
                    ));
                }
            }
        }
    }

    /// Injects the crash or freeze due at the engine's current round (any
    /// still due in this reduction once it has `ended`). Returns true after
    /// a freeze.
    fn strike(&mut self, engine: &Engine, ended: bool) -> Result<bool> {
        let reduction = (self.op - 1) as usize;
        let round = engine.status().round;
        let due = |f: &Fault| f.strikes(reduction, round, ended);
        let Some(at) = self.faults.iter().position(due) else {
            return Ok(false);
        };
        match self.faults.swap_remove(at) {
            Fault::Freeze { duration, .. } => {
                std::thread::sleep(duration);
                Ok(true)
            }
            _ => {
                let error = Error::transport(
                    TransportKind::Closed,
                    format!("rank {} crashed (injected fault)", self.rank),
                );
                self.out = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Reads the exits published since the last look; true if there were.
    fn take_exits(&mut self) -> bool {
        let count = self.presence.exit_count.load(Ordering::Acquire);
        if count == self.exits_seen {
            return false;
        }
        self.exits_seen = count;
        for r in 0..self.size {
            if self.exits[r].is_none() {
                self.exits[r] = self.presence.exit(r);
            }
        }
        true
    }

    /// Fails with [`Error::Excluded`] if a rank that left held this one
    /// departed.
    fn check_exclusion(&self) -> Result<()> {
        let excluded = self.exits.iter().enumerate().any(|(r, e)| {
            r != self.rank && e.as_ref().is_some_and(|e| e.departed.contains(&self.rank))
        });
        if excluded {
            return Err(Error::Excluded { rank: self.rank });
        }
        Ok(())
    }

    /// Hands `engine` every departure known so far: proven if the rank has
    /// left (before this reduction, or after it was held departed),
    /// suspected if not. Telling an engine again changes nothing.
    fn apply_departures(&mut self, engine: &mut Engine) {
        for r in (0..self.size).filter(|&r| r != self.rank) {
            let held = self.departed.contains(&r);
            match self.exits[r].as_ref() {
                Some(exit) if held || exit.from_op <= self.op => {
                    if exit.from_op > self.op {
                        // It took part in this reduction to the end: the
                        // result it announced may be adopted.
                        engine.peer_finished(r);
                    }
                    engine.peer_departed(r);
                    self.departed.insert(r);
                }
                _ if held => engine.peer_suspected(r),
                _ => {}
            }
        }
    }

    /// The failure detector: suspects every neighbour the current round
    /// waits for that has left after this reduction (it can send nothing
    /// more) or is frozen inside one. Returns true if it suspected one.
    fn watch(&mut self, engine: &mut Engine) -> bool {
        let mut suspected = false;
        for p in engine.status().waiting_for {
            if self.exits[p].is_some() || self.presence.silent(p, self.peer_timeout) {
                engine.peer_suspected(p);
                self.departed.insert(p);
                suspected = true;
            }
        }
        suspected
    }

    /// Installs the repaired neighbour set when the engine asks for it.
    fn reconfigure(&self, engine: &mut Engine) {
        let status = engine.status();
        if status.reconfigure {
            let (peers, bound) = self.neighbourhood(&status.departed);
            // The repair is monotone, so the only possible error is a
            // Laplacian step too large for the new degree, which aborts the
            // reduction for everyone with that error.
            let _ = engine.set_peers(&peers, bound);
        }
    }

    /// This rank's neighbours once `departed` have left, and a bound on the
    /// diameter of the live graph.
    fn neighbourhood(&self, departed: &[usize]) -> (Vec<usize>, usize) {
        if departed.is_empty() {
            return (
                self.graph.neighbors(self.rank).collect(),
                self.diameter_bound,
            );
        }
        let graph = self.graph.repaired(departed);
        let bound = graph.live_diameter_bound(departed).unwrap_or(self.size);
        (graph.neighbors(self.rank).collect(), bound)
    }

    /// Takes in every letter already in the inbox.
    fn drain(&mut self, engine: &mut Engine) {
        while let Ok(letter) = self.inbox.try_recv() {
            self.take(engine, letter);
        }
    }

    /// Routes a letter to the engine of its reduction.
    fn take(&mut self, engine: &mut Engine, letter: Letter) {
        let Letter::Message(envelope) = letter else {
            return; // an exit: looked at before the next round
        };
        if envelope.op == self.op {
            self.deliver(engine, &envelope);
        } else if envelope.op > self.op {
            self.stash.push(envelope);
        } else if let Some((op, mut last)) = self.last.take() {
            if op == envelope.op {
                // Errors are ignored, that reduction being over — but a
                // result that contradicts it is a lie, and its sender is
                // cut off.
                let received = last.receive(envelope.from, &envelope.message.as_message());
                self.post(op, &mut last);
                if let Err(Violation::Contradicts { peer, .. }) = received {
                    self.cut_off(engine, peer);
                }
            } else {
                self.fence(&envelope);
            }
            self.last = Some((op, last));
        } else {
            self.fence(&envelope);
        }
    }

    /// Hands a message of the current reduction to its engine.
    fn deliver(&mut self, engine: &mut Engine, envelope: &Envelope) {
        // A malformed message, or one that contradicts this rank's state:
        // the sender is cut off. (Another input length is no violation:
        // the engine fails the reduction for everyone.)
        if engine
            .receive(envelope.from, &envelope.message.as_message())
            .is_err()
        {
            self.cut_off(engine, envelope.from);
        }
    }

    /// Cuts off a member that broke the protocol or lied.
    fn cut_off(&mut self, engine: &mut Engine, peer: usize) {
        engine.peer_suspected(peer);
        self.departed.insert(peer);
    }

    /// A member this rank holds departed asks about a reduction long over
    /// here: tell it that it departed, so that it stops (the engine's fence,
    /// for reductions whose engine is gone). Only questions are answered,
    /// so that two fences never answer each other.
    fn fence(&self, envelope: &Envelope) {
        let asks = matches!(envelope.message.header.kind, Kind::Round | Kind::Hello);
        if !asks || !self.departed.contains(&envelope.from) {
            return;
        }
        let message = OwnedMessage {
            header: Header::new(Kind::Events, 0),
            events: vec![Event::Departed {
                member: envelope.from as u32,
            }],
            payload: Vec::new(),
            abort: None,
        };
        if let Some(sender) = self.senders.get(envelope.from) {
            let _ = sender.try_send(Letter::Message(Envelope {
                op: envelope.op,
                from: self.rank,
                message: Arc::new(message),
            }));
        }
    }

    /// Sends everything `engine` (of reduction `op`) has to send; messages
    /// for full inboxes are dropped (see the module docs).
    fn post(&mut self, op: u64, engine: &mut Engine) {
        let peers = engine.status().peers;
        let (rank, peers, senders) = (self.rank, &peers, &self.senders);
        engine.poll_outgoing(|target, message| {
            let message = Arc::new(message.to_owned());
            let deliver = |to: usize| {
                if let Some(sender) = senders.get(to) {
                    let _ = sender.try_send(Letter::Message(Envelope {
                        op,
                        from: rank,
                        message: Arc::clone(&message),
                    }));
                }
            };
            match target {
                Target::Peers => peers.iter().for_each(|&to| deliver(to)),
                Target::Peer(to) => deliver(to),
            }
        });
    }
}
