import FuzzSupport
import GatewayPolicies
import Glibc

/// The JSON parser and the shaping engine. Input: a spec line, then the document.
/// The spec line holds `;`-separated directives: `target=a.b`, `collection`, `allow=a.b,c`,
/// `deny=x.y`, `rename=old:new`, `group=g`.
/// Properties: parse ∘ serialize is the identity on what parses; a shaped value serializes
/// to JSON that parses back to it; without target, rename and group, a denied path is gone
/// from the result and the result keeps nothing outside the allowed paths' first keys.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzShape(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    let newline = bytes.firstIndex(of: 10) ?? count
    let specLine = String(decoding: bytes[..<newline], as: UTF8.self)
    let body = Array(bytes[min(newline + 1, count)...])

    guard let value = try? JSON.parse(body) else { return 0 }
    let text = value.serialized()
    let again = try? JSON.parse(text)
    require(again == value, "serialize then parse changed the document: \(String(decoding: text, as: UTF8.self))")

    var target: [String]?
    var collection = false
    var allow: [[String]]?
    var deny: [[String]] = []
    var rename: [String: String] = [:]
    var group: String?
    for directive in specLine.split(separator: ";") {
        let parts = directive.split(separator: "=", maxSplits: 1).map(String.init)
        let arg = parts.count > 1 ? parts[1] : ""
        switch parts.first {
        case "target": target = ShapeSpec.path(arg)
        case "collection": collection = true
        case "allow": allow = arg.split(separator: ",").compactMap { ShapeSpec.path(String($0)) }
        case "deny": deny = arg.split(separator: ",").compactMap { ShapeSpec.path(String($0)) }
        case "rename":
            for pair in arg.split(separator: ",") {
                let kv = pair.split(separator: ":", maxSplits: 1).map(String.init)
                if kv.count == 2 { rename[kv[0]] = kv[1] }
            }
        case "group": group = arg.isEmpty ? nil : arg
        default: break
        }
    }
    let spec = ShapeSpec(target: target, collection: collection, allow: allow, deny: deny, rename: rename, group: group)
    let shaped = spec.apply(value)
    let shapedText = shaped.serialized()
    require((try? JSON.parse(shapedText)) == shaped, "shaped output does not parse back to itself")

    if target == nil && rename.isEmpty && group == nil {
        let elements: [JSON]
        if case .array(let items) = shaped { elements = items } else { elements = [shaped] }
        for element in elements {
            for path in deny { require(!reaches(path[...], element), "denied path \(path) survived") }
            if let allow, case .object(let members) = element {
                let firstKeys = Set(allow.compactMap(\.first))
                for m in members { require(firstKeys.contains(m.key), "key \(m.key) kept outside the allowed paths") }
            }
        }
    }
    return 0
}

/// Whether the path names something in the value, arrays traversed the way the shaper does.
func reaches(_ path: ArraySlice<String>, _ value: JSON) -> Bool {
    guard let key = path.first else { return true }
    switch value {
    case .object:
        guard let child = value[key] else { return false }
        return reaches(path.dropFirst(), child)
    case .array(let items): return items.contains { reaches(path, $0) }
    default: return false
    }
}

/// The entry point SwiftPM links as `main` (see CFuzzDriver.h).
@_cdecl("fuzz_shape_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzShape)
}
