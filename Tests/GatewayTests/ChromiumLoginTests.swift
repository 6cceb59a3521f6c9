import Foundation
import Testing

/// The browser login driven by a real browser (issue 9): headless Chromium opens a page of a
/// login route, follows the redirects to the demo provider and back, and the page it ends on
/// is the upstream's answer. Needs Debian's `chromium` (`.ci/run` installs it).
@Suite struct ChromiumLoginTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    @Test(.timeLimit(.minutes(2))) func headlessChromiumLogsInAndSeesTheUpstream() async throws {
        let binary = try #require(Self.chromium, "headless Chromium is needed: apt-get install chromium")
        let s = try await LoginTests.start()
        defer { Task { await s.stop() } }
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        // A browser that hangs is stopped after 60 s, which ends its output.
        let dom = await Tool.run(
            binary,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--user-data-dir=\(profile.path)", "--dump-dom", s.base + "/app/page",
            ]
        ).output
        // The page is the upstream's JSON answer to /app/page, reached after the login.
        #expect(dom.contains("\"uri\":\"/app/page\""), "\(dom.prefix(500))")
        #expect(s.idp.granted("authorization_code") == 1)
        let auth = s.rig.upstreams[0].authorizations.last ?? ""
        #expect(auth.hasPrefix("Bearer ey"))
    }
}
