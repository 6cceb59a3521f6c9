import NIOCore
import NIOHTTP1

/// What both halves of one tunnel share (both channels are on one event loop: the pools are
/// per loop): the time of the last byte in either direction, read by the idle timer.
final class TunnelActivity {
    var last: UInt64
    init(now: UInt64) { last = now }
}

/// Joins a client connection and an upstream connection byte for byte after a `101 Switching
/// Protocols` (WebSocket). Each side reads only while the other can write. The tunnel is
/// closed after `server.tunnel_idle_timeout` with no byte either way, and each side runs
/// `onClose` once when its channel goes (the connection gauge, the target's connection slot).
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    let activity: TunnelActivity
    /// Set on the client side only: the idle timeout, and its timer.
    private let idleTimeout: Int64?
    private var timer: Scheduled<Void>?
    private var onClose: (() -> Void)?

    init(activity: TunnelActivity, idleTimeout: Int64?, onClose: (() -> Void)?) {
        self.activity = activity
        self.idleTimeout = idleTimeout
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let idleTimeout { arm(context, in: idleTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
        timer?.cancel()
        timer = nil
        let done = onClose
        onClose = nil
        done?()
    }

    /// Checks at the end of each idle period whether a byte came meanwhile; closes both
    /// sides when none did.
    private func arm(_ context: ChannelHandlerContext, in nanos: Int64) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(1_000_000, nanos))) { [self] in
            guard let context = self.context, let idleTimeout else { return }
            let idle = Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds &- activity.last)
            if idle >= idleTimeout {
                partner?.context?.close(promise: nil)
                context.close(promise: nil)
            } else {
                arm(context, in: idleTimeout - idle)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.last = NIODeadline.now().uptimeNanoseconds
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        partner = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resume() }
    }

    func read(context: ChannelHandlerContext) {
        if let p = partner?.context, !p.channel.isWritable {
            pendingRead = true
            return
        }
        context.read()
    }

    private func resume() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}

enum Tunnel {
    /// Moves both channels from HTTP to raw bytes. Bytes read past the upgrade are handed on
    /// when the HTTP handlers are removed (each keeps what it had not parsed).
    /// `onClientClose` runs when the client's side has gone; the target's connection slot is
    /// given back when the upstream side has.
    static func join(
        downstream: ChannelHandlerContext, upstream: UpstreamConnection, proxy: ProxyHandler, idleTimeout: Int64,
        onClientClose: @escaping () -> Void
    ) {
        let activity = TunnelActivity(now: NIODeadline.now().uptimeNanoseconds)
        let down = TunnelHandler(activity: activity, idleTimeout: idleTimeout, onClose: onClientClose)
        let pool = upstream.pool
        let up = TunnelHandler(activity: activity, idleTimeout: nil, onClose: { pool.tunnelEnded(upstream) })
        down.partner = up
        up.partner = down
        let dp = downstream.channel.pipeline.syncOperations
        let upPipe = upstream.channel.pipeline.syncOperations
        var downAdded = false
        var upAdded = false
        do {
            try dp.addHandler(down)
            downAdded = true
            try upPipe.addHandler(up)
            upAdded = true
            _ = upPipe.removeHandler(upstream.handler)
            _ = dp.removeHandler(proxy)
        } catch {
            downstream.close(promise: nil)
            upstream.channel.close(promise: nil)
            // A half never added never runs its `onClose`.
            if !downAdded { onClientClose() }
            if !upAdded { pool.tunnelEnded(upstream) }
            return
        }
        let downChannel = downstream.channel
        downChannel.read()
        upstream.channel.read()
    }
}
