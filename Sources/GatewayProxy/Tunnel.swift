import NIOCore
import NIOHTTP1

/// Joins a client connection and an upstream connection byte for byte after a `101 Switching
/// Protocols` (WebSocket). Each side reads only while the other can write.
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
    static func join(downstream: ChannelHandlerContext, upstream: UpstreamConnection, proxy: ProxyHandler) {
        let down = TunnelHandler()
        let up = TunnelHandler()
        down.partner = up
        up.partner = down
        let dp = downstream.channel.pipeline.syncOperations
        let upPipe = upstream.channel.pipeline.syncOperations
        do {
            try dp.addHandler(down)
            try upPipe.addHandler(up)
            _ = upPipe.removeHandler(upstream.handler)
            _ = dp.removeHandler(proxy)
        } catch {
            downstream.close(promise: nil)
            upstream.channel.close(promise: nil)
            return
        }
        let downChannel = downstream.channel
        downChannel.read()
        upstream.channel.read()
    }
}
