//! The addon's link settings for Node (napi-build: on macOS, N-API's symbols resolved when Node
//! loads the addon).

fn main() {
    napi_build::setup();
}
