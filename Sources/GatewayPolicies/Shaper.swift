/// BFF response shaping (route `shape`, SPEC §2.7), on a parsed JSON value. Steps, in
/// this order:
///
/// 1. `target`: the sub-document at a dot path (objects only); `null` when it is missing.
/// 2. `collection` (or an array at that point): the next three steps apply to each element
///    (elements that are not objects pass as they are).
/// 3. `allow`: keep only these dot paths. Arrays on the way are traversed (`items.id` keeps
///    `id` in every element of `items`); a path whose parent is not an object keeps nothing
///    of it.
/// 4. `deny`: remove these dot paths, arrays traversed the same way.
/// 5. `rename`: top-level keys (of each element, under `collection`), `{ "old": "new" }`.
/// 6. `group`: wrap the whole result under one key.
///
/// Member order is kept as the upstream sent it (a renamed key keeps its place).
public struct ShapeSpec: Sendable, Hashable {
    public var target: [String]?
    public var collection: Bool
    public var allow: PathTrie?
    public var deny: PathTrie?
    public var rename: [String: String]
    public var group: String?

    public init(
        target: [String]? = nil, collection: Bool = false, allow: [[String]]? = nil, deny: [[String]] = [], rename: [String: String] = [:],
        group: String? = nil
    ) {
        self.target = target
        self.collection = collection
        self.allow = allow.map(PathTrie.init)
        self.deny = deny.isEmpty ? nil : PathTrie(deny)
        self.rename = rename
        self.group = group
    }

    /// `a.b.c` as segments; nil for an empty path or an empty segment.
    public static func path(_ text: String) -> [String]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        return parts.isEmpty || parts.contains(where: \.isEmpty) ? nil : parts
    }

    public func apply(_ value: JSON) -> JSON {
        var v = value
        if let target {
            v = Self.select(target, in: v) ?? .null
        }
        if collection || isArray(v), case .array(let items) = v {
            v = .array(items.map(shapeOne))
        } else {
            v = shapeOne(v)
        }
        if let group { v = .object([JSON.Member(group, v)]) }
        return v
    }

    private func isArray(_ v: JSON) -> Bool {
        if case .array = v { return true }
        return false
    }

    private func shapeOne(_ value: JSON) -> JSON {
        guard case .object = value else { return value }
        var v = value
        if let allow { v = allow.keep(v) }
        if let deny { v = deny.remove(v) }
        if !rename.isEmpty, case .object(var members) = v {
            for i in members.indices {
                if let new = rename[members[i].key] { members[i].key = new }
            }
            v = .object(members)
        }
        return v
    }

    static func select(_ path: [String], in value: JSON) -> JSON? {
        var v = value
        for key in path {
            guard let next = v[key] else { return nil }
            v = next
        }
        return v
    }
}

/// Dot paths as a tree of keys: a node is terminal when a path ends there.
public struct PathTrie: Sendable, Hashable {
    public var terminal = false
    public var children: [String: PathTrie] = [:]

    public init(_ paths: [[String]]) {
        for p in paths { insert(p[...]) }
    }

    private init() {}

    private mutating func insert(_ path: ArraySlice<String>) {
        guard let first = path.first else {
            terminal = true
            return
        }
        var child = children[first] ?? PathTrie()
        child.insert(path.dropFirst())
        children[first] = child
    }

    /// Whether some path of this trie starts with `path` or is a prefix of it.
    public func overlaps(_ path: [String]) -> Bool {
        var node = self
        for key in path {
            if node.terminal { return true }
            guard let next = node.children[key] else { return false }
            node = next
        }
        return true
    }

    /// Only what the paths name.
    func keep(_ value: JSON) -> JSON {
        if terminal { return value }
        switch value {
        case .object(let members):
            var out: [JSON.Member] = []
            out.reserveCapacity(min(members.count, children.count))
            for m in members {
                guard let child = children[m.key] else { continue }
                if child.terminal {
                    out.append(m)
                } else {
                    switch m.value {
                    case .object, .array: out.append(JSON.Member(m.key, child.keep(m.value)))
                    default: break  // a path through a scalar keeps nothing of it
                    }
                }
            }
            return .object(out)
        case .array(let items):
            return .array(
                items.compactMap { item in
                    switch item {
                    case .object, .array: return keep(item)
                    default: return nil
                    }
                })
        default:
            return value
        }
    }

    /// Everything but what the paths name.
    func remove(_ value: JSON) -> JSON {
        switch value {
        case .object(let members):
            var out: [JSON.Member] = []
            out.reserveCapacity(members.count)
            for m in members {
                guard let child = children[m.key] else {
                    out.append(m)
                    continue
                }
                if child.terminal { continue }
                out.append(JSON.Member(m.key, child.remove(m.value)))
            }
            return .object(out)
        case .array(let items):
            return .array(items.map(remove))
        default:
            return value
        }
    }
}
