//! The web app is built by esbuild into `web/dist`, which the binary
//! embeds. With `web/node_modules` installed (by `ui/setup.sh`), this runs
//! `npm run build` whenever the app's sources change; without it, a fresh
//! clone stops here with the one command to run.

use std::path::Path;
use std::process::Command;

fn main() {
    let web = Path::new("web");
    for p in [
        "src",
        "index.html",
        "style.css",
        "build.mjs",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed=web/{p}");
    }
    println!("cargo:rerun-if-changed=web/node_modules/.package-lock.json");
    if web.join("node_modules").is_dir() {
        let status = Command::new("npm")
            .args(["run", "--silent", "build"])
            .current_dir(web)
            .status();
        match status {
            Ok(s) if s.success() => return,
            Ok(s) => panic!("lumen-ui: `npm run build` in ui/web failed ({s}); see its output above"),
            Err(e) => panic!(
                "lumen-ui: cannot run npm ({e}): run `ui/setup.sh` (as root) to install Node.js and build the web app"
            ),
        }
    }
    if !web.join("dist/index.html").is_file() {
        panic!(
            "lumen-ui: the web app is not built (no ui/web/node_modules): run `ui/setup.sh` (as root: installs \
             Node.js, npm and Chromium if missing, then `npm ci` and the build)"
        );
    }
}
