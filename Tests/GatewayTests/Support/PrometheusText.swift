/// A parser of the Prometheus text exposition format (0.0.4), strict enough that output the
/// format does not allow fails the test: `# HELP` / `# TYPE` lines, and samples
/// `name{label="value",...} value` with escaped label values.
struct PrometheusText {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }
    struct Failure: Error, CustomStringConvertible {
        var line: Int
        var text: String
        var description: String { "line \(line): \(text)" }
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let line = Substring(raw)
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 3 else { throw Failure(line: n + 1, text: String(line)) }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[3])) else {
                        throw Failure(line: n + 1, text: String(line))
                    }
                    types[String(parts[2])] = String(parts[3])
                } else if parts[1] != "HELP" {
                    throw Failure(line: n + 1, text: String(line))
                }
                continue
            }
            samples.append(try Self.sample(line, n + 1))
        }
    }

    private static func isNameChar(_ c: Character, first: Bool) -> Bool {
        c.isASCII && (c.isLetter || c == "_" || c == ":" || (!first && c.isNumber))
    }

    private static func sample(_ line: Substring, _ n: Int) throws -> Sample {
        var i = line.startIndex
        var name = ""
        while i < line.endIndex, isNameChar(line[i], first: name.isEmpty) {
            name.append(line[i])
            i = line.index(after: i)
        }
        guard !name.isEmpty else { throw Failure(line: n, text: String(line)) }
        var labels: [String: String] = [:]
        if i < line.endIndex, line[i] == "{" {
            i = line.index(after: i)
            while i < line.endIndex, line[i] != "}" {
                var key = ""
                while i < line.endIndex, isNameChar(line[i], first: key.isEmpty) {
                    key.append(line[i])
                    i = line.index(after: i)
                }
                guard !key.isEmpty, i < line.endIndex, line[i] == "=" else { throw Failure(line: n, text: String(line)) }
                i = line.index(after: i)
                guard i < line.endIndex, line[i] == "\"" else { throw Failure(line: n, text: String(line)) }
                i = line.index(after: i)
                var value = ""
                while i < line.endIndex, line[i] != "\"" {
                    if line[i] == "\\" {
                        i = line.index(after: i)
                        guard i < line.endIndex else { throw Failure(line: n, text: String(line)) }
                        switch line[i] {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default: throw Failure(line: n, text: String(line))
                        }
                    } else {
                        value.append(line[i])
                    }
                    i = line.index(after: i)
                }
                guard i < line.endIndex else { throw Failure(line: n, text: String(line)) }
                i = line.index(after: i)
                labels[key] = value
                if i < line.endIndex, line[i] == "," { i = line.index(after: i) }
            }
            guard i < line.endIndex else { throw Failure(line: n, text: String(line)) }
            i = line.index(after: i)
        }
        guard i < line.endIndex, line[i] == " " else { throw Failure(line: n, text: String(line)) }
        let rest = line[line.index(after: i)...].split(separator: " ")
        guard let first = rest.first, rest.count <= 2 else { throw Failure(line: n, text: String(line)) }
        let value: Double
        switch first {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let v = Double(first) else { throw Failure(line: n, text: String(line)) }
            value = v
        }
        return Sample(name: name, labels: labels, value: value)
    }

    /// The value of the one sample with this name and these labels (other labels ignored).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }?.value
    }
}
