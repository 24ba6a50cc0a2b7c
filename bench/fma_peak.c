// FP32 FMA peak of this machine: 12 independent AVX-512 FMA chains per thread (enough to cover
// 4-cycle latency on two FMA ports), no memory traffic. Build and run:
//   cc -O2 -mavx512f -fopenmp bench/fma_peak.c -o /tmp/fma_peak && OMP_NUM_THREADS=2 /tmp/fma_peak
// Prints the best of 5 runs in GFLOP/s (bench/gemm.py --peak does this for you).
#include <immintrin.h>
#include <stdio.h>
#include <omp.h>
#define F(x) x=_mm512_fmadd_ps(x,b,c);
int main(){
  double best=0;
  for (int rep=0;rep<5;rep++){
  double t0=omp_get_wtime(); long iters=20000000; float res=0;
  #pragma omp parallel reduction(+:res)
  {
    __m512 b=_mm512_set1_ps(1.0000001f), c=_mm512_set1_ps(1e-9f);
    __m512 a0=_mm512_set1_ps(0),a1=_mm512_set1_ps(1),a2=_mm512_set1_ps(2),a3=_mm512_set1_ps(3),a4=_mm512_set1_ps(4),a5=_mm512_set1_ps(5),a6=_mm512_set1_ps(6),a7=_mm512_set1_ps(7),a8=_mm512_set1_ps(8),a9=_mm512_set1_ps(9),a10=_mm512_set1_ps(10),a11=_mm512_set1_ps(11);
    for(long it=0; it<iters; it++){
      F(a0)F(a1)F(a2)F(a3)F(a4)F(a5)F(a6)F(a7)F(a8)F(a9)F(a10)F(a11)
      __asm__ volatile("" : "+v"(a0),"+v"(a1),"+v"(a2),"+v"(a3),"+v"(a4),"+v"(a5),"+v"(a6),"+v"(a7),"+v"(a8),"+v"(a9),"+v"(a10),"+v"(a11));
    }
    res += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0,a1),_mm512_add_ps(a2,a3)),_mm512_add_ps(_mm512_add_ps(a4,a5),_mm512_add_ps(_mm512_add_ps(a6,a7),_mm512_add_ps(_mm512_add_ps(a8,a9),_mm512_add_ps(a10,a11))))));
  }
  double t=omp_get_wtime()-t0; int nt=omp_get_max_threads();
  double gf = nt*iters*12.0*32/t/1e9; if(gf>best)best=gf;
  }
  printf("threads %d best %.1f GFLOP/s\n",omp_get_max_threads(),best);
}
