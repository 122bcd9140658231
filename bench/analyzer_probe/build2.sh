set -u
CXX=$1; OUT=$2; shift 2
mkdir -p $OUT
INC="-I/tmp/tflm -I/tmp/fb/include -I/tmp/gemmlowp -I/tmp/ruy -I/tmp/cmsisnn -I/tmp/cmsisnn/Include"
for f in $SRC/*.cc; do
  b=$(basename $f .cc)
  $CXX -std=c++17 -O0 -c -fno-exceptions -fno-rtti -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON "$@" $INC $f -o $OUT/$b.o 2> $OUT/$b.err || echo "FAIL $b"
done
