//! The response side of `HttpConnection`: pairing each response with its request,
//! answers to requests that did not parse, lost responses, protocol switches, and
//! finishing the front exchange.
use super::{
    Exchange, ExchangeEnd, HttpConnection, Pending, Request, RequestHead, RequestSeen, Response,
    ResponseHead,
    body::{Framing, response_framing},
    h2::H2Connection,
    offers_h2c,
    preface::Preface,
    stream::Event,
};

impl HttpConnection {
    pub(super) fn response_event(&mut self, event: Event<ResponseHead>, ts: u64) {
        match event {
            Event::Head {
                head,
                first_byte_ns,
                size,
            } => self.response_head(head, first_byte_ns, size, ts),
            Event::BodyDone { size } => {
                if std::mem::take(&mut self.response_attached) {
                    if let Some(response) = self.front_response_mut() {
                        response.body_size = size;
                        response.end_ns = ts;
                        response.body_complete = true;
                    }
                    self.finish_front(ExchangeEnd::Complete);
                }
            }
            Event::BodyCut { progress } => {
                if std::mem::take(&mut self.response_attached) {
                    if let Some(response) = self.front_response_mut() {
                        response.body_size = progress.size;
                        response.end_ns = progress.last_ns;
                    }
                    self.finish_front(ExchangeEnd::ResponseUnparsed);
                }
            }
            Event::Desync { in_body } => {
                self.stats.desyncs += 1;
                // The lost bytes may hold whole responses, whatever else they cut.
                self.responses_lost = true;
                if !in_body {
                    self.response_lost(ts);
                }
            }
            Event::Junk {
                bytes,
                instead_of_head,
                ..
            } => {
                self.count_junk(bytes);
                if instead_of_head {
                    self.response_lost(ts);
                }
            }
            Event::Oversized => {
                self.stats.oversized_heads += 1;
                self.response_lost(ts);
            }
        }
    }

    fn response_head(&mut self, head: ResponseHead, first_byte_ns: u64, size: u64, ts: u64) {
        // Requests are answered in order, unparsed ones included.
        let paired = self.pair_response(first_byte_ns) && !self.unparsed_is_first(first_byte_ns);
        let method = match self.pending.front() {
            Some(p) if paired => p.request.head.method(),
            _ => "",
        };
        let switches =
            head.status == 101 || (method == "CONNECT" && (200..300).contains(&head.status));
        let interim = (100..200).contains(&head.status) && !switches;
        let framing = response_framing(&head, method == "HEAD");
        if !paired {
            self.stats.orphan_responses += 1;
            if switches {
                self.switch_protocols();
                return;
            }
            if interim {
                return;
            }
            // The server answered something the request parser could not read (or did
            // not see): the response still makes a record, so that nothing the server
            // served goes untraced.
            self.answer_unparsed(first_byte_ns);
        }
        if interim {
            return;
        }
        if head.status == 101
            && head.offers_h2c
            && self
                .pending
                .front()
                .is_some_and(|p| offers_h2c(&p.request.head.headers))
        {
            self.upgrade_to_h2c();
            return;
        }
        let complete = switches || framing == Framing::None;
        if head.closes
            && let Some(seq) = self.pending.front().map(|p| p.seq)
        {
            self.closes_after(seq);
        }
        let response = Response {
            head,
            head_ns: ts,
            end_ns: ts,
            head_size: size,
            body_size: 0,
            body_complete: complete,
        };
        if let Some(p) = self.pending.front_mut() {
            p.response = Some(response);
        }
        if switches {
            self.switch_protocols();
            self.finish_front(ExchangeEnd::Upgraded);
        } else if complete {
            self.finish_front(ExchangeEnd::Complete);
        } else {
            self.response_attached = true;
            self.responses.start_body(framing, false, ts);
        }
    }

    /// Whether the oldest unparsed request came before every pending one, and before the
    /// response starting at `start`: that response answers it.
    fn unparsed_is_first(&self, start: u64) -> bool {
        let Some(&(ts, _)) = self.unparsed_lines.front() else {
            return false;
        };
        ts <= start
            && self
                .pending
                .front()
                .is_none_or(|p| ts < p.request.first_byte_ns)
    }

    /// Puts in front of the pending requests one for the response starting at `start`,
    /// which answers no parsed request: the oldest unparsed request line from before it,
    /// if any.
    fn answer_unparsed(&mut self, start: u64) {
        let line = match self.unparsed_lines.front() {
            Some(&(ts, _)) if ts <= start => self.unparsed_lines.pop_front(),
            _ => None,
        };
        // Without a line, the request is the head still being read (the server answered
        // before it ended: an error), or one the tracer never saw; its time is the
        // earliest it can be, so records stay in request order.
        let partial = self.requests.partial_head_start();
        if line.is_none() && partial.is_some() {
            self.answered_partial_head = partial;
        }
        let earliest = partial.map_or(start, |t| t.min(start));
        let (first_byte_ns, line) = line.unwrap_or((earliest, Box::default()));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_front(Pending {
            seq,
            request: Request {
                head: RequestHead::default(),
                first_byte_ns,
                head_size: 0,
                body_size: 0,
                body_complete: false,
            },
            response: None,
            seen: RequestSeen::Unparsed(line),
        });
    }

    /// Decides whether a response whose first byte came at `start` answers the front pending
    /// request.
    fn pair_response(&mut self, start: u64) -> bool {
        if std::mem::take(&mut self.responses_lost) {
            self.drop_answered(start);
        }
        self.front_awaits_response(start)
    }

    /// After lost response bytes, gives up on the requests whose responses were probably
    /// among them. A client that does not pipeline sends a request only after the previous
    /// response, so of the requests that came before this response only the latest (or the
    /// latest batch, if several came in one chunk) can still be waiting for it.
    fn drop_answered(&mut self, start: u64) {
        let Some(latest) = self
            .pending
            .iter()
            .map(|p| p.request.first_byte_ns)
            .filter(|&t| t <= start)
            .max()
        else {
            return;
        };
        while self
            .pending
            .front()
            .is_some_and(|p| p.request.first_byte_ns < latest)
        {
            self.finish_front(ExchangeEnd::ResponseUnparsed);
        }
    }

    /// The front request is waiting for a final response and was sent before `start`, as its
    /// response must have been; a later one means the response's own request was lost.
    pub(super) fn front_awaits_response(&self, start: u64) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.response.is_none() && p.request.first_byte_ns <= start)
    }

    /// The head of a response was lost, garbled or too large: if it can be the front
    /// request's, that request will not get another.
    fn response_lost(&mut self, ts: u64) {
        if self.front_awaits_response(ts) {
            self.finish_front(ExchangeEnd::ResponseUnparsed);
        }
    }

    /// The server accepted `Upgrade: h2c`: the front request is answered as HTTP/2
    /// stream 1, so it is handed to the HTTP/2 decoder rather than recorded as a 101.
    fn upgrade_to_h2c(&mut self) {
        self.switch_protocols();
        let Some(mut p) = self.pending.pop_front() else {
            return;
        };
        if self.request_body_seq.take() == Some(p.seq)
            && let Some(progress) = self.requests.body_progress()
        {
            p.request.body_size = progress.size;
        }
        self.upgrade_seq = None;
        self.stats.http2_connections += 1;
        self.h2 = Some(Box::new(H2Connection::upgraded(p.request)));
        // The client's next bytes are the HTTP/2 connection preface.
        self.preface = Preface::new();
        self.sync_h2();
    }

    fn switch_protocols(&mut self) {
        self.requests.upgrade();
        self.responses.upgrade();
    }

    pub(super) fn count_junk(&mut self, bytes: u64) {
        self.stats.non_http_chunks += 1;
        self.stats.non_http_bytes += bytes;
    }

    fn front_response_mut(&mut self) -> Option<&mut Response> {
        self.pending.front_mut()?.response.as_mut()
    }

    pub(super) fn last_response_mut(&mut self) -> Option<&mut Response> {
        self.completed.last_mut()?.response.as_mut()
    }

    /// Ends the oldest pending exchange, filling in the bodies still being counted.
    pub(super) fn finish_front(&mut self, end: ExchangeEnd) {
        let Some(mut p) = self.pending.pop_front() else {
            return;
        };
        if self.request_body_seq == Some(p.seq)
            && let Some(progress) = self.requests.body_progress()
        {
            p.request.body_size = progress.size;
        }
        if std::mem::take(&mut self.response_attached)
            && let (Some(response), Some(progress)) =
                (p.response.as_mut(), self.responses.body_progress())
        {
            response.body_size = progress.size;
            response.end_ns = progress.last_ns;
        }
        // Unparsed requests from before this one were evidently not answered.
        let first_byte_ns = p.request.first_byte_ns;
        self.unparsed_lines.retain(|&(ts, _)| ts >= first_byte_ns);
        let mut released = None;
        if self.upgrade_seq == Some(p.seq) {
            self.upgrade_seq = None;
            if end != ExchangeEnd::Upgraded {
                released = self.requests.release_hold();
            }
        }
        self.completed.push(Exchange {
            request: p.request,
            response: p.response,
            end,
            framing_ambiguous: self.ambiguous_since.is_some_and(|since| p.seq >= since),
            request_seen: p.seen,
            http2: None,
        });
        if let Some(held) = released {
            self.parse_requests(held.chunk());
        }
    }
}
