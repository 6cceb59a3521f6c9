import FuzzSupport
import GatewayProxy
import Glibc
import NIOCore

/// The RESP reply parser as the Redis connection drives it: bytes arrive in pieces and
/// every complete reply is taken out. The first byte picks where the input is cut in two.
/// Properties: the replies and the final verdict (waiting for more, or a protocol error)
/// are the same whether the bytes come at once or in two pieces; a reply's bytes are
/// consumed only when it is complete.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESP(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: start, count: count)
    guard let cutByte = all.first else { return 0 }
    let data = Array(all.dropFirst())
    let cut = data.isEmpty ? 0 : Int(cutByte) % (data.count + 1)

    let whole = drain([data[...]])
    let pieces = drain([data[..<cut], data[cut...]])
    // Compared as text: a `,nan` double is not equal to itself.
    require("\(whole.replies)" == "\(pieces.replies)", "replies differ when the bytes come in two pieces (cut at \(cut))")
    require(whole.failed == pieces.failed, "the verdict differs when the bytes come in two pieces (cut at \(cut))")
    return 0
}

/// Feeds the pieces one after the other, taking out every complete reply after each.
func drain(_ pieces: [ArraySlice<UInt8>]) -> (replies: [RESPValue], failed: Bool) {
    var buffer = ByteBuffer()
    var replies: [RESPValue] = []
    for piece in pieces {
        buffer.writeBytes(piece)
        while true {
            let before = buffer.readerIndex
            do {
                guard let reply = try RESPParser.parse(&buffer) else {
                    require(buffer.readerIndex == before, "an incomplete reply consumed bytes")
                    break
                }
                require(buffer.readerIndex > before, "a reply consumed no bytes")
                replies.append(reply)
            } catch {
                return (replies, true)
            }
        }
    }
    return (replies, false)
}

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_resp_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzRESP)
}
