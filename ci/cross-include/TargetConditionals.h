/* A stand-in for the macOS SDK's TargetConditionals.h, so that ring's C code compiles when
 * ci/test.sh type-checks the apple-darwin targets from Linux (the `cross` step: clang with
 * -ffreestanding, no SDK). Nothing built with it is linked or run; a real macOS build uses the
 * SDK's header. */
#ifndef WEBSERV_CROSS_TARGET_CONDITIONALS_H
#define WEBSERV_CROSS_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_OS_EMBEDDED 0
#endif
