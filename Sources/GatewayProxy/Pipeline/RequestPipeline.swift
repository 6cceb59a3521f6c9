import GatewayAuth
import GatewayConfig
import GatewayPolicies
import NIOCore
import NIOHTTP1

/// What a phase of the request walk decided.
enum PhaseResult {
    /// Go on with the next phase.
    case next
    /// Answer the request from the gateway and stop.
    case reply(LocalReply)
    /// The phase handed the request on (to its upstream, an aggregate) or answered it itself.
    case done
    /// The phase holds the request until a future completes (`hold`), then runs again.
    case held
}

/// An answer the gateway makes itself: an error of SPEC §4, or a response of its own.
enum LocalReply {
    case error(GatewayError, extraHeaders: [(String, String)] = [])
    case response(status: Int, headers: [(String, String)], body: [UInt8])
}

/// The phases after routing, in the order DESIGN.md's request walk takes them. A held
/// request resumes at the phase that held it.
enum RequestStep: UInt8 {
    /// `rate_limit.per_ip`, before authentication, so credential guessing is throttled too.
    case perIPLimit
    /// A route with `auth.login`: a session, refreshed when it has to be, or a login.
    case loginGate
    /// A route with `auth`: JWT, API key or basic credentials.
    case authenticate
    /// The rate-limit tier of who the request is.
    case tierLimit
    /// Where the admitted request goes: a fixed response, an upstream (split, mirror,
    /// fault), or an aggregate.
    case chooseUpstream
}

/// What a held phase waited for, handed to it when it runs again.
enum HeldResult {
    case limit(Result<GCRA.Outcome, any Error>)
    case tokens(Result<LoginFlow.Tokens, any Error>)
    case keysFetched
    case delayed
}

extension ProxyHandler {
    /// What the request path computed before authentication, for the steps after it.
    struct Admission {
        var snapshot: Snapshot
        var path: String
        var query: Substring?
        var trusted: Bool
        var expectsContinue: Bool
    }

    /// Runs the phases from `step` on, until one answers, hands the request on, or holds it.
    /// A switch, not a list of handlers: each phase is called directly, nothing is allocated.
    func runPipeline(_ ex: Exchange, _ a: Admission, from step: RequestStep) {
        var step = step
        while true {
            let result: PhaseResult
            switch step {
            case .perIPLimit: result = perIPLimit(ex, a)
            case .loginGate: result = loginGate(ex, a)
            case .authenticate: result = authenticate(ex, a)
            case .tierLimit: result = tierLimit(ex, a)
            case .chooseUpstream: result = chooseUpstream(ex, a)
            }
            switch result {
            case .next:
                guard let following = RequestStep(rawValue: step.rawValue + 1) else { return }
                step = following
            case .reply(let reply): return answer(ex, reply)
            case .done, .held: return
            }
        }
    }

    /// Holds the request at `step` until `future` completes, then runs the phases from that
    /// step again with what it waited for.
    func hold<T>(
        _ ex: Exchange, _ a: Admission, at step: RequestStep, until future: EventLoopFuture<T>,
        keeping keep: @escaping (Result<T, any Error>) -> HeldResult
    ) -> PhaseResult {
        holdUntil(ex, future) { [self] result in
            ex.resumed = keep(result)
            runPipeline(ex, a, from: step)
        }
        return .held
    }

    /// The one hold/resume helper. The request (and what follows it on the connection) waits
    /// on this loop for `future` (keys, Redis, a token endpoint, a fault's delay); reading
    /// stops meanwhile. `then` runs when it completes, unless the exchange ended first (a
    /// timeout, the client gone); afterwards what the client sent behind the head is parsed.
    func holdUntil<T>(_ ex: Exchange, _ future: EventLoopFuture<T>, then: @escaping (Result<T, any Error>) -> Void) {
        ex.phase = .held
        // The future belongs to this loop (the fetch's or the store's promise, a scheduled
        // task of this loop), so its callback runs here.
        future.assumeIsolated().whenComplete { [self] result in
            guard exchange === ex, ex.phase == .held else { return }
            ex.phase = .routing
            then(result)
            resumeParsing(ex)
        }
    }
}
