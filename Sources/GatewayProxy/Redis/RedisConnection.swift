import NIOCore
import NIOPosix

/// One connection to Redis, confined to an event loop: commands are pipelined (sent as
/// they come, replies matched in order), each with a timeout. A timeout or a broken
/// connection fails every command in flight and closes it (later replies could no longer
/// be matched); the next command reconnects, after a backoff that grows while connecting
/// fails (100 ms doubling to 5 s). Meanwhile commands fail at once: a request never waits
/// for Redis longer than its command timeout.
final class RedisConnection {
    enum Failure: Error, Equatable {
        case unavailable(String)
        case timeout
        case server(String)
    }

    let loop: any EventLoop
    let host: String
    let port: Int
    let database: Int
    let password: String?
    let connectTimeout: TimeAmount
    private var channel: (any Channel)?
    private var connecting: EventLoopFuture<any Channel>?
    private var inFlight = CircularBuffer<(promise: EventLoopPromise<RESPValue>, timeout: Scheduled<Void>?)>()
    private var backoff: TimeAmount = .milliseconds(100)
    private var retryAt: NIODeadline = .uptimeNanoseconds(0)
    /// Called on the loop when a connection is established (after SELECT).
    var onConnect: (() -> Void)?

    init(loop: any EventLoop, host: String, port: Int, database: Int, password: String? = nil, connectTimeout: TimeAmount) {
        self.loop = loop
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.connectTimeout = connectTimeout
    }

    var isConnected: Bool { channel != nil }

    /// Sends one command; the future completes on this connection's loop.
    func send(_ args: [String], timeout: TimeAmount) -> EventLoopFuture<RESPValue> {
        loop.preconditionInEventLoop()
        if let channel { return write(args, on: channel, timeout: timeout) }
        if let connecting {
            return connecting.assumeIsolated().flatMap { channel in self.write(args, on: channel, timeout: timeout) }.nonisolated()
        }
        if NIODeadline.now() < retryAt {
            return loop.makeFailedFuture(Failure.unavailable("redis \(host):\(port) is down; retrying in a moment"))
        }
        let future = connect()
        connecting = future
        return future.assumeIsolated().flatMap { channel in self.write(args, on: channel, timeout: timeout) }.nonisolated()
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { [loop] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RESPHandler(loop: loop))
                }
            }
        let connected = bootstrap.connect(host: host, port: port).hop(to: loop)
        return connected.assumeIsolated().flatMap { channel -> EventLoopFuture<any Channel> in
            guard let handler = try? channel.pipeline.syncOperations.handler(type: RESPHandler.self) else {
                channel.close(promise: nil)
                return self.loop.makeFailedFuture(Failure.unavailable("could not set up the redis connection"))
            }
            handler.owner = self
            self.channel = channel
            self.connecting = nil
            self.backoff = .milliseconds(100)
            channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(channel) }
            if let password = self.password {
                _ = self.write(["AUTH", password], on: channel, timeout: self.connectTimeout)
            }
            if self.database != 0 {
                _ = self.write(["SELECT", String(self.database)], on: channel, timeout: self.connectTimeout)
            }
            self.onConnect?()
            return self.loop.makeSucceededFuture(channel)
        }.flatMapErrorThrowing { error in
            self.connecting = nil
            self.retryAt = .now() + self.backoff
            self.backoff = min(self.backoff * 2, .seconds(5))
            throw Failure.unavailable("cannot connect to redis \(self.host):\(self.port): \(error)")
        }.nonisolated()
    }

    private func write(_ args: [String], on channel: any Channel, timeout: TimeAmount) -> EventLoopFuture<RESPValue> {
        let promise = loop.makePromise(of: RESPValue.self)
        let timer = loop.assumeIsolated().scheduleTask(in: timeout) { self.timedOut() }
        inFlight.append((promise, timer))
        var buffer = channel.allocator.buffer(capacity: 64)
        RESPParser.encode(args, into: &buffer)
        channel.writeAndFlush(buffer, promise: nil)
        return promise.futureResult
    }

    /// A reply arrived: it answers the oldest command in flight.
    func replied(_ value: RESPValue) {
        guard let first = inFlight.popFirst() else { return }
        first.timeout?.cancel()
        if case .error(let message) = value {
            first.promise.fail(Failure.server(message))
        } else {
            first.promise.succeed(value)
        }
    }

    private func timedOut() {
        failAll(.timeout)
        channel?.close(promise: nil)
        channel = nil
    }

    private func closed(_ ch: any Channel) {
        if channel === ch { channel = nil }
        failAll(.unavailable("the redis connection closed"))
    }

    func failAll(_ error: Failure) {
        while let p = inFlight.popFirst() {
            p.timeout?.cancel()
            p.promise.fail(error)
        }
    }

    func close() {
        failAll(.unavailable("closed"))
        channel?.close(promise: nil)
        channel = nil
    }
}

/// Reads replies off the socket and hands them to the connection.
final class RESPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let loop: any EventLoop
    weak var owner: RedisConnection?
    private var buffer: ByteBuffer?

    init(loop: any EventLoop) { self.loop = loop }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer?.writeBuffer(&incoming)
        }
        guard var b = buffer else { return }
        buffer = nil
        do {
            while let v = try RESPParser.parse(&b) { owner?.replied(v) }
        } catch {
            owner?.failAll(.unavailable("redis sent something that is not RESP: \(error)"))
            context.close(promise: nil)
            return
        }
        if b.readableBytes > 0 {
            b.discardReadBytes()
            buffer = b
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
