import ArgumentParser
import Foundation
import GatewayConfig
import GatewayDemo
import GatewayProxy
import Logging

@main
enum Main {
    /// Runs the command; usage errors exit 1 as SPEC §1 says (ArgumentParser would use 64).
    static func main() async {
        do {
            var command = try GatewayCommand.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = GatewayCommand.exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((GatewayCommand.fullMessage(for: error) + "\n").utf8))
                Foundation.exit(ExitStatus.badConfig.rawValue)
            }
            GatewayCommand.exit(withError: error)
        }
    }
}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "An API gateway and edge reverse proxy driven by one JSON file.",
        version: GatewayVersion.version,
        subcommands: [Run.self, Validate.self, Demo.self, Version.self],
        defaultSubcommand: Run.self)
}

enum GatewayVersion {
    static let version = "0.1.0"
    /// The library versions this build requires (the `from:` of Package.swift).
    static let libraries = [
        ("swift-nio", "2.101.2"), ("swift-crypto", "4.5.2"), ("swift-log", "1.16.2"),
        ("swift-argument-parser", "1.8.2"), ("swift-atomics", "1.3.0"),
    ]
}

/// Exit codes of SPEC §1.
enum ExitStatus {
    static let badConfig = ExitCode(1)
    static let cannotStart = ExitCode(2)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve with the given config (default ./gateway.json).")

    @Option(name: .long, help: "The config file.")
    var config: String = "gateway.json"

    func run() async throws {
        try await Runner(configPath: config, demo: false).run()
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway on the repository's gateway.json with in-process demo services, and print curl lines to try.")

    @Option(name: .long, help: "The config file.")
    var config: String = "gateway.json"

    func run() async throws {
        try await Runner(configPath: config, demo: true).run()
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check config files; print every error with its JSON path and line:column.")

    @Argument(help: "The files to check.")
    var files: [String]

    func run() throws {
        var failed = false
        for file in files {
            // The file alone: whether variables such as the admin token are set is checked
            // where the gateway runs (`run` and every reload), not where files are checked.
            let result = ConfigLoader.load(path: file, environment: [:])
            for d in result.diagnostics { print("\(file):\(d)") }
            if result.isValid {
                print("\(file): ok (\(result.file?.routes.count ?? 0) routes, \(result.file?.upstreams.count ?? 0) upstreams)")
            } else {
                failed = true
                print("\(file): \(result.errors.count) error(s)")
            }
        }
        if failed { throw ExitStatus.badConfig }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the libraries it was built with.")

    func run() {
        print("gateway \(GatewayVersion.version)")
        print("swift \(compilerVersion)")
        for (name, version) in GatewayVersion.libraries { print("  \(name) >= \(version)") }
    }

    var compilerVersion: String {
        #if compiler(>=6.3)
            return "6.3+"
        #elseif compiler(>=6.2)
            return "6.2"
        #else
            return "6.x"
        #endif
    }
}
